"""heap trace: every malloc and free from `heap trace start` on, and why each did what it did."""

from __future__ import annotations

from typing import List

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import trace
from ..args import Args
from ..errors import HeapError
from ..explain import record_lines
from .base import HeapCommand, Out, implements, open_heap
from .settings import setting

ACTIONS = ("start", "stop", "clear")


def _number(option: str, text: str, low: int) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise HeapError(f"{option} wants a number, not {text!r}; see help heap trace") from None
    if n < low:
        raise HeapError(f"{option} wants a number >= {low}, not {n}; see help heap trace")
    return n


@implements("heap trace")
class HeapTrace(HeapCommand):
    """start    trace every call of malloc, calloc, realloc, free, memalign,
           aligned_alloc, posix_memalign, valloc, pvalloc and malloc_trim, in
           every thread, as the program runs (--ring N: keep the last N calls,
           default set heap trace-ring, 10000; older ones are dropped and
           counted)
  stop     stop tracing: every breakpoint the trace set is deleted (the calls
           are kept)
  clear    forget the calls recorded
  (none)   show the calls recorded: sequence number, thread, the call and its
           result, the caller (the first frame outside libc), the chunk and
           why: where it came from (tcache[i], fast[i], small[i], large[i],
           unsorted, last_remainder, top, mmap) or where it went (tcache[i],
           fast[i], unsorted, merged into top, munmap), the neighbours it
           merged with, bytes given back to the kernel, and the system calls it
           made (brk, mmap, munmap, mremap, madvise, mprotect) with their
           arguments and results.

The trace reads the allocator's state at each call's entry and return
(breakpoints whose handlers let the program run on; a malloc the thread's
tcache serves and a free into it are settled at their entry, where glibc's
path gives the result and the tcache after it): it never writes to the
program or calls into it, so the program gets the same pointers as without it,
only slower.  A call made inside a traced call (realloc's malloc) is part of
it.  aligned_alloc is shown as memalign where glibc makes one the alias of the
other.

  --last N     the last N calls only
  --thread N   the calls of gdb's thread N only
  --json       {"tracing", "dropped", "calls": [{"seq", "thread", "lwp", "call",
               "args", "result", "caller", "chunk", "size", "from", "to",
               "bin_index", "merged_with", "trimmed", "syscalls": [{"name",
               "args", "result"}], "why"}]}"""

    def run(self, args: Args, out: Out) -> None:
        actions = [w for w in args.rest if w in ACTIONS]
        if len(args.rest) > 1 or len(actions) != len(args.rest):
            raise HeapError(f"unexpected argument {args.rest[-1]!r}; heap trace takes one of "
                            f"{', '.join(ACTIONS)} or nothing (see help heap trace)")
        action = actions[0] if actions else None
        ring = args.value("--ring")
        if ring is not None and action != "start":
            raise HeapError("--ring goes with heap trace start")
        if action is not None and (args.flag("--json") or args.value("--last") or args.value("--thread")):
            raise HeapError(f"heap trace {action} takes no --json, --last or --thread; heap trace shows the calls")
        if action == "start":
            trace.start(_number("--ring", ring, 1) if ring is not None else setting("trace-ring") or trace.DEFAULT_RING)
            out.line("heap: tracing malloc and free calls; continue the program, then heap trace")
        elif action == "stop":
            out.line(f"heap: trace stopped; {len(trace.LOG.records)} calls recorded" if trace.stop()
                     else "heap: not tracing")
        elif action == "clear":
            trace.LOG.clear()
            out.line("heap: trace cleared")
        else:
            self.show(args, out)

    def show(self, args: Args, out: Out) -> None:
        if not args.flag("--json") and gdb.selected_inferior().pid:
            try:
                open_heap(args)  # its warnings, as every command gives them: a heap caught mid-update
            except HeapError:
                pass  # the calls recorded are shown whatever the heap is now
        records = list(trace.LOG.records)
        thread = args.value("--thread")
        if thread is not None:
            n = _number("--thread", thread, 1)
            records = [r for r in records if r.thread == n]
        last = args.value("--last")
        if last is not None:
            n = _number("--last", last, 0)
            records = records[len(records) - n:] if n else []
        log = trace.LOG
        if args.flag("--json"):
            out.json({"tracing": trace.tracing(), "dropped": log.dropped, "calls": [r.doc() for r in records]})
            return
        lines: List[str] = [f"heap trace: {'tracing' if trace.tracing() else 'not tracing'}; "
                            f"{len(log.records)} calls recorded" + (f", {log.dropped} older ones dropped"
                                                                    if log.dropped else "")
                            + (f", {trace.in_progress()} in progress" if trace.in_progress() else "")]
        if log.error_count:
            lines.append(f"heap: warning: {log.error_count} calls could not be read ({'; '.join(log.errors)})")
        for r in records:
            lines += record_lines(r)
        out.lines(lines)
