"""One pointer's chunk, cheaply: for the convenience functions ($heap_size(p), ...), which run in
breakpoint conditions, so they read the chunk's header and the one size class's bins instead
of walking the heap.

gdb-free: built on a heap.Heap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import HeapError, MemoryReadError
from .heap import Heap
from .mmapped import mmapped_header
from .model import NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS, Arena, read_fastbins, read_regular_bins, read_tcache


@dataclass
class PointerChunk:
    """The chunk a pointer names: its header, and the arena whose heap holds it (None for an
    mmapped chunk, which belongs to no arena)."""

    chunk: int
    size_field: int
    arena: Optional[Arena]

    @property
    def size(self) -> int:
        return self.size_field & ~SIZE_BITS

    @property
    def is_mmapped(self) -> bool:
        return self.arena is None


def resolve(heap: Heap, address: int, as_chunk: bool = False) -> PointerChunk:
    """The chunk whose user pointer is `address` (or whose header is at `address`, as_chunk).
    Its header must be one glibc would have written: a size at least MINSIZE and aligned, the
    chunk inside one of an arena's heaps with NON_MAIN_ARENA saying which, or a valid mmapped
    chunk.  Nothing else is read: a damaged or made-up header is refused, not walked around."""
    layout = heap.layout
    chunk = address if as_chunk else address - layout.header_size
    what = "chunk address" if as_chunk else "user pointer"
    other = "a user pointer (drop \"chunk\")" if as_chunk else "a chunk address, add \"chunk\" as a second argument"
    try:
        prev_size, sizef = heap.reader.words(chunk, 2)
    except MemoryReadError:
        raise HeapError(f"{address:#x} is not readable; give a pointer malloc returned") from None
    size = sizef & ~SIZE_BITS
    aligned = size >= layout.minsize and size % layout.malloc_alignment == 0
    for arena in heap.arenas:
        for region in arena.heaps:
            if region.first_chunk <= chunk < region.end:
                if not aligned or chunk + size > region.end or bool(sizef & NON_MAIN_ARENA) == arena.main:
                    raise HeapError(f"no chunk header for the {what} {address:#x} (size field {sizef:#x}); "
                                    f"for {other}; heap chunk ADDR shows what is there")
                return PointerChunk(chunk, sizef, arena)
    if mmapped_header(layout, chunk, prev_size, sizef) and heap.reader.readable(chunk + size - 1):
        return PointerChunk(chunk, sizef, None)
    raise HeapError(f"{address:#x} is in no heap and is not an mmapped chunk's {what}; give a pointer malloc "
                    f"returned (for {other})")


def usable_size(heap: Heap, p: PointerChunk) -> int:
    """musable() in malloc.c: an mmapped chunk's size - 2*SIZE_SZ (size - SIZE_SZ from 2.43,
    whose mmapped chunks end with a header of their own: memsize()); size - SIZE_SZ when the
    next chunk's PREV_INUSE says it is in use (so also in tcache or a fastbin); else 0.
    (2.31's dumped-heap and malloc-check cases do not arise in a live program's own heap.)"""
    S = heap.layout.size_sz
    if p.is_mmapped:
        return p.size - (1 if heap.layout.features.mmap_chunk_v2 else 2) * S
    try:
        next_sizef = heap.reader.word(p.chunk + p.size + S)
    except MemoryReadError:
        raise HeapError(f"the chunk after {p.chunk:#x} is not readable; see heap check") from None
    return p.size - S if next_sizef & PREV_INUSE else 0


def held_by_bin(heap: Heap, p: PointerChunk) -> bool:
    """Is the chunk in a bin or in the selected thread's tcache?  Only the bins its size can sit
    in are walked: its tcache bin, its fastbin, the unsorted bin and its small or large bin,
    each walk bounded as model.py bounds it."""
    arena = p.arena
    if arena is None:
        return False  # munmap'd on free: never in a bin
    layout, reader, size = heap.layout, heap.reader, p.size
    chains = []
    tcache = heap.tcache  # the thread's own, whichever arena the chunk came from
    if tcache and layout.features.tcache:
        index = layout.tcache_index(size)
        if index < layout.tcache_bins:
            chains += read_tcache(reader, layout, tcache, heap.mp, only=(index,))
    state = arena.state
    fast = layout.fastbin_index(size)
    if 0 <= fast < len(state.fastbinsY):
        chains += read_fastbins(reader, layout, state, only=(fast,))
    chains += read_regular_bins(reader, layout, state, only=(1, layout.bin_index(size)))
    return any(p.chunk in chain.chunks for chain in chains)
