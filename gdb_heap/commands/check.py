"""heap check: every problem glibc's own checks would trip over, per arena."""

from __future__ import annotations

from .. import render
from ..args import Args
from ..check import check_arena
from ..errors import HeapError
from .base import HeapCommand, Out, arenas_for, implements, namer, one_or_all, open_heap, style, width


@implements("heap check")
class HeapCheck(HeapCommand):
    """Walks the chunks and every bin and lists each problem with the address of the
chunk whose header or links are damaged, what is wrong, and
the message glibc would abort with when it trips over it.
Checked: chunk sizes (alignment, MINSIZE, inside the heap), the next chunk's
PREV_INUSE and prev_size against the bins, top's size, each double-linked bin's
fd/bk and its header's bk, the large bins' fd_nextsize/bk_nextsize ring and size
order, sizes against their bin, fastbin and tcache chains (alignment,
safe-linking, loops, links leaving every heap, tcache counts and keys against
glibc's tcache_key), each chunk's NON_MAIN_ARENA bit against its arena (and,
when set in the main arena, the heap_info free() would read), chunks a bin lists
that the heap walk does not find, chunks in two bins, and a bin listing the top
chunk.
The selected thread's tcache is checked with its arena.

Without --json the command ends with an error when it finds a problem, so
`gdb -batch` exits non-zero (a CI job can gate on it).

A heap caught mid-update: when a thread is stopped inside glibc's allocator
(malloc, free, realloc, _int_free...) or an arena's mutex is held, glibc may be
halfway through changing that arena (between clearing PREV_INUSE and linking a
freed chunk into its bin, say), and a healthy heap looks damaged.  Every problem
in such an arena is then listed and marked "may be glibc's update in progress",
and is not counted toward the error (a CI job must not fail on a healthy heap
stopped mid-free); --strict counts them.  A thread aborting inside the allocator
(malloc_printerr) is not an update in progress: glibc found that damage itself.

  --json         {"arena", "problems": [{"address", "message", "glibc_abort",
                 "other_paths": [{"path", "glibc_abort"}],
                 "maybe_in_progress"}], "in_progress": [{"thread", "lwp",
                 "function", "entry", "arena", "arena_from", "locked",
                 "aborting"}]}; never an error for problems found (with
                 --all-arenas: {"arenas": [...]})
  --strict       count the problems that may be glibc's update in progress too
  --arena ADDR   the arena at ADDR (default: the selected thread's arena, else
                 main_arena)
  --all-arenas   every arena in turn"""

    def run(self, args: Args, out: Out) -> None:
        self.no_extra(args)
        heap = open_heap(args)
        reports = [check_arena(heap, arena) for arena in arenas_for(heap, args)]
        name = namer(heap).brief
        if args.flag("--json"):
            out.json(one_or_all(args, [render.check_doc(r, heap.mid_update, name) for r in reports]))
            return
        st = style()
        for report in reports:
            out.lines(render.fit_all(render.check_lines(report, st, name), width()))
        found = sum(len(r.problems) if args.flag("--strict") else r.damage for r in reports)
        if found:
            out.flush()
            raise HeapError(f"{found} problem{'s' * (found != 1)} found in the heap; each is listed above "
                            "at the chunk it damages (heap chunk ADDR shows that chunk's header and links)")
        maybe = sum(len(r.problems) for r in reports)
        if maybe:
            out.line(f"not an error: the {maybe} problem{'s' * (maybe != 1)} may be glibc's update in progress; "
                     "let the thread leave the allocator and check again, or count them with --strict")
