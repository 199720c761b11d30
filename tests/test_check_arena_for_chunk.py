"""What heap check says free() makes of a NON_MAIN_ARENA chunk (Checker.arena_for_chunk), exact:
heap_for_ptr rounds the chunk down to HEAP_MAX_SIZE (64 MiB on x86-64: 0x4000000) and reads
the heap_info's ar_ptr there (its first word).  On tests/test_thread_arena.py's image."""

from __future__ import annotations

from gdb_heap.check import Checker
from tests.test_thread_arena import ARENA_T, H, with_thread_arena

LEAD = "free() takes its arena from the heap_info at {:#x} (the chunk's address rounded down to HEAP_MAX_SIZE " \
       "0x4000000): ar_ptr {:#x}, "


def said(ar_ptr: int, chunk: int = H + 0x8D0) -> str:
    s, heap = with_thread_arena(info_ar_ptr=ar_ptr)
    return Checker(heap, heap.arenas[0]).arena_for_chunk(chunk)


def test_a_known_arena():
    assert said(ARENA_T) == LEAD.format(H, ARENA_T) + "an arena of this process"
    assert said(ARENA_T, H + 0x3FFFFF0) == LEAD.format(H, ARENA_T) + "an arena of this process"
    assert said(ARENA_T, H + 0x8D1) == LEAD.format(H, ARENA_T) + "an arena of this process"  # a misaligned one


def test_an_unreadable_ar_ptr():
    assert said(0x10) == LEAD.format(H, 0x10) + (
        "not an arena of this process, not readable: free() crashes there (SIGSEGV) unless the tcache takes the "
        "chunk")


def test_a_readable_ar_ptr_that_is_no_arena():
    assert said(H + 8) == LEAD.format(H, H + 8) + (
        "not an arena of this process: free() takes those words for an arena (its mutex, bins, top), so unless "
        "the tcache takes the chunk it crashes (SIGSEGV) or aborts on whatever they hold")


def test_an_unreadable_heap_info():
    s, heap = with_thread_arena()
    chunk = s.sbrk_base + 0x290
    base = chunk & ~0x3FFFFFF
    assert Checker(heap, heap.main_arena).arena_for_chunk(chunk) == (
        f"free() looks for its heap_info at {base:#x} (the chunk's address rounded down to HEAP_MAX_SIZE "
        "0x4000000), which is not readable: free() would crash there (SIGSEGV)")
