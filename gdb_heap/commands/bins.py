"""heap bins: the arena's bins, each chain in list order."""

from __future__ import annotations

from typing import Optional

from .. import render, views
from ..args import Args
from ..errors import HeapError, MemoryReadError
from ..model import BIN_KINDS, SIZE_BITS, Arena, BinChain
from .base import HeapCommand, Out, arenas_for, implements, namer, one_or_all, open_heap, style, width
from .settings import setting


@implements("heap bins")
class HeapBins(HeapCommand):
    """KIND is any of tcache, fast, unsorted, small, large (default: all).  tcache is
the selected thread's (gdb's "thread N" selects another; --all-threads shows
every thread's, each named by its gdb thread number and LWP); its bins show the
chunk size they hold and the count tcache keeps, checked against the walked
chain.  Fastbin and tcache links are decoded from safe-linking (glibc 2.32+).
Unsorted and large bins show each chunk's size.  A chain that loops, leaves
mapped memory, or is longer than it can be is cut there and reported.  set heap
chain-limit N shows the first N chunks of each chain, then how many more.

  --json         {"arena", "bins": [{"kind", "index", "size", "count",
                 "chunks"}], "problems"} (tcache bins add "thread" and "lwp":
                 whose tcache it is)
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else
                 main_arena)
  --all-arenas   every arena in turn
  --all-threads  every thread's tcache, in the document of the selected thread's
                 arena"""

    def run(self, args: Args, out: Out) -> None:
        for word in args.rest:
            if word not in BIN_KINDS:
                raise HeapError(f"unknown bin kind {word!r}; the kinds are {', '.join(BIN_KINDS)}")
        kinds = tuple(k for k in BIN_KINDS if k in args.rest) or BIN_KINDS
        heap = open_heap(args)
        shown = views.bins_view(heap, arenas_for(heap, args), kinds, args.flag("--all-threads"))
        if args.flag("--json"):
            out.json(one_or_all(args, [render.bins_view_doc(v, heap.mid_update) for v in shown]))
            return
        st = style()

        def size_of(chunk: int) -> Optional[int]:
            try:
                return heap.reader.word(chunk + heap.layout.size_sz) & ~SIZE_BITS
            except MemoryReadError:
                return None

        names, cols = namer(heap), width()
        for view in shown:
            if args.flag("--all-arenas"):
                out.line(render.arena_heading(view.arena, st))

            def head(chain: BinChain, arena: Arena = view.arena, tcache: Optional[int] = view.tcache) -> str:
                return names.bin_head(arena, chain, tcache)

            out.lines(render.bins_view_lines(view, st, size_of, head, cols, setting("chain-limit"), names.brief))
