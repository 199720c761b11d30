"""A heap caught mid-update: threads stopped inside glibc's allocator, arenas whose mutex is held.

gdb-free: the gdb side (frames.py) hands over one plain record per thread (its innermost
frames' function names, the arena the allocator's own frame names where debug info has it,
its thread_arena); this module decides which threads are inside malloc, free, realloc...,
on which arena, and which arenas' problems may be glibc's update in progress, not damage.

A thread stopped inside _int_free between clearing the next chunk's PREV_INUSE and linking the
chunk into the unsorted bin leaves a heap that looks damaged ("double free or corruption
(!prev)") and is not: glibc finishes the free when the thread runs.  The arena a thread works
on is: `av`/`ar_ptr` of its allocator frame (debug symbols); else the one arena whose mutex is
held that no other such thread accounts for; else its own thread_arena.  The update can touch
any chunk or bin of that arena (malloc_consolidate, the unsorted bin's sorting), and the
thread's own tcache (tcache_put/tcache_get take no lock): every problem in those arenas is
marked, not only the ones near one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

FRAMES = 16  # innermost frames looked at per thread: malloc's deepest chain is far shorter

# glibc's allocator functions (malloc/malloc.c, arena.c, hooks.c before 2.34, malloc-check.c
# and malloc-debug.c from 2.34, glibc 2.26 to 2.42), as debug info or the exported symbols
# name them; "__GI_" (glibc's internal alias) is dropped before comparing.
ALLOCATOR = frozenset("""
    malloc free calloc realloc reallocarray memalign aligned_alloc posix_memalign valloc pvalloc cfree
    __malloc __free __calloc __realloc __memalign __valloc __pvalloc __posix_memalign
    __libc_malloc __libc_malloc2 __libc_free __libc_calloc __libc_calloc2 __libc_realloc __libc_memalign
    __libc_valloc __libc_pvalloc __libc_reallocarray __reallocarray
    _int_malloc _int_free _int_free_chunk _int_free_check _int_free_create_chunk _int_free_merge_chunk
    _int_free_maybe_consolidate _int_realloc _int_memalign _mid_memalign malloc_consolidate
    sysmalloc sysmalloc_mmap sysmalloc_mmap_fallback systrim mremap_chunk munmap_chunk unlink_chunk
    malloc_trim __malloc_trim mtrim malloc_info __malloc_info malloc_stats __malloc_stats
    mallinfo mallinfo2 __libc_mallinfo __libc_mallinfo2 int_mallinfo mallopt __libc_mallopt
    malloc_init_state ptmalloc_init __ptmalloc_init
    arena_get2 arena_get_retry _int_new_arena reused_arena get_free_list detach_arena remove_from_free_list
    new_heap grow_heap shrink_heap heap_trim __malloc_arena_thread_freeres arena_thread_freeres
    malloc_hook_ini realloc_hook_ini memalign_hook_ini malloc_check free_check realloc_check memalign_check
    top_check __debug_malloc __debug_free __debug_calloc __debug_realloc __debug_memalign
    __debug_aligned_alloc __debug_posix_memalign __debug_valloc __debug_pvalloc _debug_mid_memalign
""".split())
TCACHE_PREFIX = "tcache_"  # tcache_get, tcache_put, tcache_init, tcache_get_n, tcache_free...

# Frames inside an allocator call that mean glibc found damage and is aborting: the problems
# are then what glibc itself tripped over, not an update in progress.
ABORTING = frozenset("""
    malloc_printerr malloc_printerr_tail __malloc_assert __libc_message __libc_message_impl
    __libc_fatal __fortify_fail abort __assert_fail
""".split())


def plain(name: Optional[str]) -> Optional[str]:
    """A function's name without glibc's internal __GI_ prefix."""
    if name and name.startswith("__GI_"):
        return name[len("__GI_"):]
    return name


def is_allocator(name: Optional[str]) -> bool:
    name = plain(name)
    return name is not None and (name in ALLOCATOR or name.startswith(TCACHE_PREFIX))


@dataclass
class ThreadFrames:
    """What the gdb side found for one thread: plain data."""

    thread: int  # gdb's thread number
    lwp: int
    frames: Sequence[Optional[str]]  # function names, innermost first (None: gdb has no name)
    arena: Optional[int] = None  # `av`/`ar_ptr` of its innermost allocator frame (debug info)
    thread_arena: Optional[int] = None  # its libc TLS thread_arena


@dataclass
class InProgress:
    """A thread inside the allocator (or, with thread None, an arena whose mutex is held while
    no thread is seen inside the allocator: a thread in fork(), or one that died holding it)."""

    thread: Optional[int]
    lwp: Optional[int]
    function: Optional[str]  # the innermost allocator function: _int_free
    entry: Optional[str]  # the outermost one, what the program called: free
    arena: Optional[int]  # the arena it works on, best guess (None: cannot tell)
    arena_from: Optional[str]  # "frame" (debug info), "mutex", "thread_arena", or None
    thread_arena: Optional[int]
    locked: bool  # that arena's mutex is held
    aborting: bool  # glibc found damage and is aborting inside this call

    def arenas(self) -> Optional[List[int]]:
        """The arenas whose state the update may have changed; None: any."""
        found = [a for a in (self.arena, self.thread_arena) if a]
        return found or None

    def who(self) -> str:
        if self.thread is None:
            return "no thread"
        call = self.function or "?"
        if self.entry and self.entry != self.function:
            call += f" (called by {self.entry})"
        return f"thread {self.thread} (LWP {self.lwp}) is in {call}"


@dataclass
class MidUpdate:
    calls: List[InProgress]

    def updating(self, arena: int) -> List[InProgress]:
        """The calls (not aborting) that may be changing this arena."""
        out = []
        for c in self.calls:
            arenas = c.arenas()
            if not c.aborting and (arenas is None or arena in arenas):
                out.append(c)
        return out

    def mark(self, arena: int) -> Optional[str]:
        """Why problems in this arena may be an update in progress ("thread 2 is in _int_free"),
        or None."""
        calls = self.updating(arena)
        if not calls:
            return None
        return "; ".join(c.who() if c.thread is not None else f"arena {arena:#x}'s mutex is held" for c in calls)


def find(threads: Sequence[ThreadFrames], locked: Sequence[int]) -> MidUpdate:
    """Which threads are inside the allocator, on which arena; `locked`: the arenas whose mutex
    is held."""
    calls: List[InProgress] = []
    for t in threads:
        names = [plain(n) for n in t.frames[:FRAMES]]
        inside = [i for i, n in enumerate(names) if is_allocator(n)]
        if not inside:
            continue
        innermost, outermost = names[inside[0]], names[inside[-1]]
        aborting = any(n in ABORTING for n in names[:inside[-1]])
        calls.append(InProgress(t.thread, t.lwp, innermost, outermost, t.arena, "frame" if t.arena else None,
                                t.thread_arena, False, aborting))
    held = list(dict.fromkeys(locked))
    unclaimed = [a for a in held if not any(c.arena == a for c in calls)]
    guessing = [c for c in calls if c.arena is None]
    for c in guessing:
        if len(unclaimed) == 1 and len(guessing) == 1:
            c.arena, c.arena_from = unclaimed[0], "mutex"
        elif c.thread_arena:
            c.arena, c.arena_from = c.thread_arena, "thread_arena"
    for c in calls:
        c.locked = c.arena in held
    for a in held:
        if not any(c.arena == a for c in calls):
            calls.append(InProgress(None, None, None, None, a, "mutex", None, True, False))
    return MidUpdate(calls)


def note(c: InProgress) -> str:
    """The line every command prints about one call."""
    if c.thread is None:
        return (f"arena {c.arena:#x}'s mutex is held, but no thread is inside malloc (a thread in fork(), or "
                "one that died holding it): its state may be mid-update")
    where = f" on arena {c.arena:#x}" if c.arena else ""
    lock = " (its mutex held)" if c.locked else ""
    if c.aborting:
        return (f"{c.who()}{where}: glibc found damage there and is aborting; the problems are real, not an "
                "update in progress")
    return (f"{c.who()}{where}{lock}: the heap is mid-update, and problems in that arena may be glibc's update "
            f"in progress, not damage (`thread {c.thread}` then `finish` until it leaves the allocator, and "
            "look again)")


def doc(c: InProgress) -> Dict[str, object]:
    return {"thread": c.thread, "lwp": c.lwp, "function": c.function, "entry": c.entry, "arena": c.arena,
            "arena_from": c.arena_from, "locked": c.locked, "aborting": c.aborting}
