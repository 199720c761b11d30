"""Convenience functions for breakpoint conditions and gdb scripts: $heap_chunk(p),
$heap_size(p), $heap_usable(p), $heap_is_free(p), $heap_arena(p).

Each reads the chunk's header (and, for $heap_is_free, the bins of the chunk's size class):
no heap walk, so a condition on a busy breakpoint stays cheap (pointer.py does the work)."""

from __future__ import annotations

from typing import Callable, Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .args import parse
from .commands.base import open_heap
from .errors import HeapError
from .heap import Heap
from .pointer import PointerChunk, held_by_bin, resolve, usable_size

ARGUMENT_HELP = """
  P is a pointer malloc returned (a user pointer, as free and realloc take it); with
  "chunk" as a second argument, P is a chunk's address (its header, as heap chunks lists it)."""


def _as_chunk(mode: Optional[gdb.Value]) -> bool:
    if mode is None:
        return False
    try:
        text = mode.string()
    except (gdb.error, RuntimeError):
        text = None
    if text not in ("chunk", "user"):
        raise HeapError('the second argument is "chunk" (P is a chunk address) or "user" (a user pointer)')
    return text == "chunk"


class HeapFunction(gdb.Function):
    """Shared: evaluate P, find the heap, turn every failure into one gdb error line."""

    fname = ""

    def __init__(self) -> None:
        super().__init__(self.fname)

    def invoke(self, *args: gdb.Value) -> gdb.Value:
        if len(args) not in (1, 2):
            raise gdb.GdbError(f'heap: ${self.fname} takes a pointer and, optionally, "chunk"; see help function '
                               f'{self.fname}')
        pointer, mode = args[0], args[1] if len(args) == 2 else None
        try:
            address = int(pointer.cast(gdb.lookup_type("unsigned long")))
            return self.compute(address, _as_chunk(mode), lambda: open_heap(parse("heap", "--json", ("--json",))))
        except gdb.GdbError:
            raise
        except HeapError as e:
            raise gdb.GdbError(f"heap: ${self.fname}: {e}") from None
        except gdb.MemoryError as e:
            raise gdb.GdbError(f"heap: ${self.fname}: cannot read memory ({e})") from None
        except (gdb.error, RuntimeError) as e:
            raise gdb.GdbError(f"heap: ${self.fname}: {e}; give a pointer malloc returned") from None

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        raise NotImplementedError


def _unsigned(n: int) -> gdb.Value:
    return gdb.Value(n).cast(gdb.lookup_type("unsigned long"))


def _pointer(n: int) -> gdb.Value:
    return gdb.Value(n).cast(gdb.lookup_type("unsigned long")).cast(gdb.lookup_type("void").pointer())


def _chunk(address: int, as_chunk: bool, heap: Callable[[], Heap]) -> PointerChunk:
    return resolve(heap(), address, as_chunk)


class HeapChunkFunction(HeapFunction):
    __doc__ = """$heap_chunk - the chunk (its header's address) that a pointer belongs to.

Usage: $heap_chunk (P [, "chunk"])
""" + ARGUMENT_HELP + """

Returns:
  The chunk's address as a void *: P - 2*SIZE_SZ for a user pointer (glibc's mem2chunk),
  once the header there is checked to be a chunk's.

Example:
  x/2gx $heap_chunk(p)"""

    fname = "heap_chunk"

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        return _pointer(_chunk(address, as_chunk, heap).chunk)


class HeapSizeFunction(HeapFunction):
    __doc__ = """$heap_size - the size of the chunk a pointer belongs to.

Usage: $heap_size (P [, "chunk"])
""" + ARGUMENT_HELP + """

Returns:
  The chunk's size without the flag bits (glibc's chunksize), header included.

Example:
  break free if $heap_size($rdi) == 0x30"""

    fname = "heap_size"

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        return _unsigned(_chunk(address, as_chunk, heap).size)


class HeapUsableFunction(HeapFunction):
    __doc__ = """$heap_usable - what malloc_usable_size would say for a pointer.

Usage: $heap_usable (P [, "chunk"])
""" + ARGUMENT_HELP + """

Returns:
  glibc's musable(): size - 2*SIZE_SZ for an mmapped chunk (size - SIZE_SZ from glibc
  2.43, whose mmapped chunks carry a trailing header), size - SIZE_SZ for a chunk in
  use (the next chunk's PREV_INUSE set; a chunk in tcache or a fastbin counts), 0 for a chunk
  free in the unsorted, small or large bins; 0 for a null pointer, as malloc_usable_size.

Example:
  break memcpy if $rdx > $heap_usable($rdi)"""

    fname = "heap_usable"

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        if address == 0:
            return _unsigned(0)
        h = heap()
        return _unsigned(usable_size(h, resolve(h, address, as_chunk)))


class HeapIsFreeFunction(HeapFunction):
    __doc__ = """$heap_is_free - whether a bin or the tcache holds the chunk of a pointer.

Usage: $heap_is_free (P [, "chunk"])
""" + ARGUMENT_HELP + """

Returns:
  1 if the chunk is in the selected thread's tcache, a fastbin, the unsorted bin or its small
  or large bin; else 0: in use, top, or mmapped, and for any pointer that is no chunk of a
  heap (a null pointer; ld.so's own frees at start-up, before libc's malloc exists), so that
  a condition on free never stops on an error.  Only the bins of the chunk's size are
  walked.  Other threads' tcaches are not looked at: in a condition on free, the selected
  thread is the one freeing, whose tcache glibc checks.

Example (amd64-linux): stop on a double free before glibc sees it
  break free if $heap_is_free($rdi)"""

    fname = "heap_is_free"

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        try:
            h = heap()
            p = resolve(h, address, as_chunk)
        except HeapError:  # no chunk of any heap there (or no malloc state yet): no bin holds it
            return gdb.Value(0)
        return gdb.Value(int(held_by_bin(h, p)))


class HeapArenaFunction(HeapFunction):
    __doc__ = """$heap_arena - the arena whose heap holds the chunk of a pointer.

Usage: $heap_arena (P [, "chunk"])
""" + ARGUMENT_HELP + """

Returns:
  The arena's address (its struct malloc_state) as a void *; 0 for an mmapped chunk, which
  belongs to no arena.

Example:
  break free if $heap_arena($rdi) != &main_arena"""

    fname = "heap_arena"

    def compute(self, address: int, as_chunk: bool, heap: Callable[[], Heap]) -> gdb.Value:
        arena = _chunk(address, as_chunk, heap).arena
        return _pointer(arena.address if arena else 0)


def register() -> None:
    for cls in (HeapChunkFunction, HeapSizeFunction, HeapUsableFunction, HeapIsFreeFunction, HeapArenaFunction):
        cls()
