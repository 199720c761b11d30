"""The commands that say what glibc would do next: heap try-free, heap try-malloc, heap fake-chunks.

Each asks paths.py (glibc's malloc and free paths, gdb-free) over the live memory; the only gdb
work here is evaluating the arguments and looking up libc's random tcache_key (2.34+).
"""

from __future__ import annotations

from typing import Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import paths, render
from ..args import Args, parse_count
from ..errors import HeapError
from .base import HeapCommand, Out, evaluate_address, implements, open_heap, style


def tcache_key() -> Optional[int]:
    """libc's static tcache_key (2.34+), through its debug info when gdb has it."""
    try:
        found = gdb.lookup_static_symbol("tcache_key")
        if found is None:
            return None
        return int(found.value()) & ((1 << 64) - 1)
    except (gdb.error, RuntimeError, AttributeError):
        return None


@implements("heap try-free")
class HeapTryFree(HeapCommand):
    """ADDR is the pointer the program would pass to free() (what malloc returned);
with --chunk, a chunk address.  Runs glibc's free() for this glibc version over
the current memory without changing it: the tcache double-free check, "free():
invalid pointer" / "invalid size", the tcache bin (room or full), the fast bin
checks, "double free or corruption (top / out / !prev)", the next chunk's size,
the merges with free neighbours (unlink_chunk's checks), the unsorted or small
bin insert, top, malloc_consolidate and the trim.  The first check that fails
ends the path with glibc's message; otherwise it says where the chunk goes. Only
the chunk, its neighbours and the bins are read: instant on any heap, unless the
merged chunk reaches 64 KiB with fast chunks about, when malloc_consolidate
visits every fast chunk (seconds for a million).

  --chunk   ADDR is the chunk's address (its header), not the user pointer
  --json    {"address", "chunk", "aborts", "failed_check", "to", "bin_index",
            "merged_with", "top_after", "trimmed", "crashes", "gave_up",
            "steps"}"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give the pointer free() would get, e.g. heap try-free p")
        address = evaluate_address(" ".join(args.rest))
        heap = open_heap(args)
        if not paths.heap_ready(heap):
            raise HeapError("the heap is not initialised yet: the program has not called malloc")
        if args.flag("--chunk"):
            address += heap.layout.header_size
        result = paths.try_free(heap.reader, paths.context_for(heap, tcache_key()), address)
        if args.flag("--json"):
            out.json(render.free_doc(result))
            return
        out.lines(render.free_lines(result, style()))


@implements("heap try-malloc")
class HeapTryMalloc(HeapCommand):
    """SIZE is the request (a number or gdb expression).  Runs glibc's malloc() for
this glibc version over the current memory without changing it, for the selected
thread (its tcache and arena): the tcache, the fast bin, the small bin,
malloc_consolidate for large requests, the unsorted bin (exact fits,
last_remainder, each other chunk sorted into its bin), the large bin, the binmap
search, top, and sysmalloc (mmap from mp_.mmap_threshold; where the heap grows,
the chunk is taken to be cut from top, as it is when sbrk extends the heap in
place).  Says which chunk comes back and from where, the side effects on the
way, or glibc's abort message.  Instant, except malloc_consolidate, which visits
every fast chunk (seconds for a million); "gave_up" only for links that loop.

  --realloc PTR  realloc(PTR, SIZE): in place (the rest freed), grown into top
                 or over the free chunk after it, or moved (the new chunk as
                 malloc finds it, the old one freed)
  --calloc  calloc(1, SIZE): up to glibc 2.40 _int_malloc directly (the tcache
            is not asked); from 2.41 the tcache first, as malloc
  --json    {"request", "chunk", "user_address", "from", "bin_index", "aborts",
            "failed_check", "crashes", "gave_up", "side_effects", "steps"}"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give one request size, e.g. heap try-malloc 24")
        size = " ".join(args.rest)  # a gdb expression may have spaces, as try-free's ADDR
        try:
            request = int(size, 0)
        except ValueError:
            request = evaluate_address(size)
        heap = open_heap(args)
        if not paths.heap_ready(heap):
            raise HeapError("the heap is not initialised yet: the program has not called malloc")
        ctx = paths.context_for(heap, tcache_key())
        realloc = args.value("--realloc")
        if realloc is not None:
            result = paths.try_realloc(heap.reader, ctx, evaluate_address(realloc), request)
        else:
            result = paths.try_malloc(heap.reader, ctx, request, calloc=args.flag("--calloc"))
        if args.flag("--json"):
            out.json(render.malloc_doc(result))
            return
        out.lines(render.malloc_lines(result, style()))


@implements("heap fake-chunks")
class HeapFakeChunks(HeapCommand):
    """TARGET is an address (a gdb expression: &__malloc_hook, a GOT entry).  Lists
each place c at or before TARGET (within --window bytes, 0x100 by default) whose
header glibc would take: "fast[i]" when malloc would take c from fast bin i
(fastbin_index of the size word's low 32 bits; c aligned from glibc 2.32, any
byte before); "tcache[i]" when free(c + 2*SIZE_SZ) would put c in tcache bin i
(aligned, a size of at least MINSIZE and a multiple of the alignment, not
IS_MMAPPED).  tcache_get checks only alignment, so any aligned c works for a
poisoned tcache link.

  --size N    only candidates of chunk size N
  --window N  how far before TARGET to look (at most 0x10000)
  --json      {"target", "candidates": [{"chunk", "size_field", "size", "fits",
              "distance"}]}"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give a target address, e.g. heap fake-chunks &__malloc_hook")
        target = evaluate_address(" ".join(args.rest))
        size = args.value("--size")
        want = parse_count(self.name, size) if size is not None else None
        window_text = args.value("--window")
        window = parse_count(self.name, window_text) if window_text is not None else 0x100
        if window > 0x10000:
            raise HeapError("--window is at most 0x10000 bytes")
        heap = open_heap(args)
        found = paths.fake_chunks(heap.reader, heap.layout, target, heap.mp.tcache_bins or heap.layout.tcache_bins,
                                  window, want)
        if args.flag("--json"):
            out.json(render.fake_doc(target, found))
            return
        out.lines(render.fake_lines(target, found, style()))
