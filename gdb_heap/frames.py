"""The gdb side of in_progress.py: each thread's innermost frames, read without running anything.

Visits every thread (locate.visit_threads restores the user's thread and frame), unwinds at
most in_progress.FRAMES frames (gdb's unwinder reads the stack; in a core file too), and for
the innermost allocator frame reads the arena it works on where debug info names it (`av` in
_int_free, _int_malloc, sysmalloc...; `ar_ptr` in __libc_malloc, __libc_free...).  Without
libc's debug symbols gdb names only exported functions (malloc, free...) and no frame inside
a static one (_int_free): the exported caller still shows the thread is inside the allocator.
"""

from __future__ import annotations

from typing import List, Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .in_progress import FRAMES, ThreadFrames, is_allocator
from .locate import Context, thread_tls, visit_threads

ARENA_VARIABLES = ("av", "ar_ptr")


def _arena_of(frame: gdb.Frame) -> Optional[int]:
    for name in ARENA_VARIABLES:
        try:
            value = frame.read_var(name)
            if not value.is_optimized_out:
                return int(value) or None
        except (gdb.error, ValueError, RuntimeError):
            continue
    return None


def _frames(ctx: Optional[Context]) -> ThreadFrames:
    thread = gdb.selected_thread()
    names: List[Optional[str]] = []
    arena: Optional[int] = None
    try:
        frame: Optional[gdb.Frame] = gdb.newest_frame()
        while frame is not None and len(names) < FRAMES:
            name = frame.name()
            names.append(name)
            if arena is None and is_allocator(name):
                arena = _arena_of(frame)
            frame = frame.older()
    except gdb.error:
        pass  # an unreadable stack: the frames found so far
    thread_arena = thread_tls(ctx).arena if ctx is not None and any(is_allocator(n) for n in names) else None
    return ThreadFrames(thread.num, thread.ptid[1] or thread.inferior.pid, names, arena, thread_arena)


def thread_frames(ctx: Optional[Context]) -> List[ThreadFrames]:
    """Every thread's innermost frames, in gdb's thread order."""
    return visit_threads(lambda _: _frames(ctx))
