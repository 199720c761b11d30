"""The commands about the whole heap: heap (the overview), heap arenas, heap top, heap mmapped."""

from __future__ import annotations

from .. import registry, render, views
from ..args import Args
from ..errors import HeapError
from .base import HeapCommand, Out, arenas_for, implements, one_or_all, open_heap, style, width


@implements("heap")
class HeapOverview(HeapCommand):
    """Prints the glibc version found, how the allocator's state was located (debug
symbols or a named heuristic), every arena with its top chunk and system memory,
each heap region, and how many chunks are in use or sit in each kind of bin
(tcache, fast, unsorted, small, large).

Subcommands:
{subcommands}

Type "help heap SUBCOMMAND" for each.  Every command takes --json for one JSON
document (the shapes are in the command contract: docs/commands.md in gdb_heap's
source), and --output FILE with it to write the document to FILE.  Scripts get
the same documents from the Python API: python import gdb_heap.api (help(...)
there).  The defaults of the text views are settings: show heap lists them."""

    def run(self, args: Args, out: Out) -> None:
        if args.rest:
            raise HeapError(registry.undefined_command(args.rest[0], self.name))
        heap = open_heap(args)
        ov = views.overview(heap)
        a = heap.anchors
        arenas = [(x, heap.arena_threads(x)) for x in heap.arenas]
        if args.flag("--json"):
            out.json(render.overview_doc(a.glibc, a.located_by, arenas, ov, heap.mid_update))
            return
        out.lines(render.fit_all(render.overview_lines(a.glibc, a.located_by, a.main_arena, a.mp, a.notes,
                                                       arenas if heap.initialised else [], ov, style()), width()))


@implements("heap arenas")
class HeapArenas(HeapCommand):
    """The arenas are listed in the order of glibc's `next` ring, starting at
main_arena.  A thread arena's heaps are mmapped regions described by a heap_info
at their start (its size in use and mprotect_size, the part made read-write),
oldest first.  The threads attached to an arena are those whose thread_arena (a
libc TLS variable) points at it; * marks the selected thread.

  --json   {"arenas": [{"address", "main", "top", "system_mem", "next", "heaps":
           [{"start", "end", "heap_info", "size", "mprotect_size"}], "threads":
           [{"thread", "lwp"}]}]} (a main-arena region sysmalloc left behind
           adds "fencepost": where glibc's pair starts)"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        if args.flag("--json"):
            out.json({"arenas": [render.arena_doc(a, heap.arena_threads(a)) for a in heap.arenas]})
            return
        st = style()
        for arena in heap.arenas:
            out.lines(render.fit_all(render.arena_lines(arena, st, heap.arena_threads(arena)), width()))


@implements("heap top")
class HeapTop(HeapCommand):
    """Shows its address, size and end, and where it sits in its heap region.  When top
is too small for a request, malloc grows the heap (brk for the main arena); when
a free leaves top larger than the trim threshold, free gives the memory back to
the kernel.

  --json   {"arena", "address", "size", "end"}"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        tops = [(arena, views.top_view(heap, arena)) for arena in arenas_for(heap, args)]
        if args.flag("--json"):
            out.json(one_or_all(args, [render.top_doc(t.top) for _, t in tops]))
            return
        st = style()
        for arena, t in tops:
            out.lines(render.fit_all(render.top_view_lines(t, arena, st), width()))


@implements("heap mmapped")
class HeapMmapped(HeapCommand):
    """malloc serves a request of at least mp_.mmap_threshold (128 KiB at first;
freeing such a chunk raises it) with a mapping of its own when top cannot: no
arena or bin refers to it, and free gives it back with munmap.  glibc only
counts them (mp_.n_mmaps, mp_.mmapped_mem), so this command looks for them: a
chunk header that glibc would write (IS_MMAPPED, a whole number of pages) at the
start of every anonymous mapping (from `info proc mappings` for a live process,
from the core file's own segments for a core), and after each chunk found. The
kernel merges neighbouring anonymous mappings, so when those do not add up to
glibc's counters, it reads every page start of the anonymous mappings (up to 1
GiB) until they do. It prints glibc's count beside what it found, and says when
they still differ. Each chunk's prev_size is the slack between its mapping's
start and the chunk (0 unless memalign placed it).

  --json   {"chunks": [{"address", "size", "user_address", "mapping_start",
           "mapping_end", "prev_size"}], "glibc_count", "glibc_bytes",
           "unreadable": [{"start", "end"}], "page_scan": null | {"scanned",
           "found", "complete"}}"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        view = open_heap(args).mmapped()
        if args.flag("--json"):
            out.json(render.mmapped_doc(view))
            return
        out.lines(render.fit_all(render.mmapped_lines(view, style()), width()))
