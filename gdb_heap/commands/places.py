"""The commands about addresses: heap where ADDR (what it is), heap layout (the address space)."""

from __future__ import annotations

from .. import places, render
from ..args import Args
from ..errors import HeapError
from .base import HeapCommand, Out, evaluate_address, implements, open_heap, style


@implements("heap where")
class HeapWhere(HeapCommand):
    """ADDR is a gdb expression.  The most precise answer first: a field of malloc's
own state (main_arena.bins[4] and the bin whose header that word is; a field of
mp_, of a thread arena's heap_info, of a thread's tcache: entries[3],
counts[3]); a chunk (how far into it and from its user pointer, its state and
bin; an mmapped chunk too); the unused end of a thread arena's heap (made
writable, or only reserved); heap bytes no chunk walk reaches; a thread's
stack; a global (symbol+offset); a mapping (its name in `info proc mappings`);
or nothing.

  --json   {"address", "kind", "chunk", "offset", "arena", "thread", "field",
           "symbol", "mapping"}: kind is chunk, mmapped, arena, malloc_par,
           heap_info, heap_reserve, heap, tcache, stack, symbol, mapping or
           nothing; a key that does not apply is null"""

    def run(self, args: Args, out: Out) -> None:
        if not args.rest:
            raise HeapError("give an address or a gdb expression, e.g. heap where p")
        address = evaluate_address(" ".join(args.rest))
        place = places.describe(open_heap(args), address)
        if args.flag("--json"):
            out.json(place.doc())
            return
        out.lines(render.where_lines(place, style()))


@implements("heap layout")
class HeapLayout(HeapCommand):
    """Each mapping of the process (range, size, protection and name, from `info
proc mappings`), and under the one each starts in: main_arena and each thread
arena's malloc_state, the main arena's heap, each thread arena's heap (the part
in use: heap_info's size; the part made writable: mprotect_size; the rest of its
HEAP_MAX_SIZE reservation, not writable), the top chunks, mp_, the mmapped
chunks, and every thread's tcache, stack pointer and thread pointer (its TLS
ends there), with the arena and threads each belongs to."""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        if not heap.initialised:
            raise HeapError("the heap is not initialised yet: the program has not called malloc; "
                            "continue past its first malloc")
        regions, loose = places.layout_regions(heap)
        out.lines(render.layout_lines(regions, loose, style()))
