"""What heap check says free() makes of a NON_MAIN_ARENA chunk (Checker.arena_for_chunk), exact:
heap_for_ptr rounds the chunk down to HEAP_MAX_SIZE (64 MiB on x86-64: 0x4000000) and reads
the heap_info's ar_ptr there (its first word).  On tests/test_thread_arena.py's image."""

from __future__ import annotations

from gdb_heap.check import Checker
from tests.synthetic import HeapBuilder
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


def merges(version, size_field, counts=None, word=8, tcache_count=None):
    """Checker.free_merges on a heap whose mp_ the builder wrote (tcache_bins 64, tcache_count 7,
    tcache_max_bytes 1032 on x86-64), with the selected thread's tcache counts given."""
    b = HeapBuilder(version, word, tcache_count=tcache_count)
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    c = Checker(heap, heap.main_arena)
    c.tcache_counts = dict(counts or {})
    return c.free_merges(size_field)


def test_which_frees_reach_the_merging_path_2_36():
    # csize2tidx(size) = (size - MINSIZE + MALLOC_ALIGNMENT - 1) / MALLOC_ALIGNMENT: 0x30 -> 1, 0x80 -> 6,
    # 0x90 -> 7, 0x400 -> 62, 0x410 -> 63
    assert merges((2, 36), 0x32) is False  # IS_MMAPPED
    assert merges((2, 36), 0x31) is False  # into tcache[1]
    assert merges((2, 36), 0x31, {1: 6}) is False and merges((2, 36), 0x31, {1: 7}) is False  # then fast
    assert merges((2, 36), 0x411, {63: 6}) is False and merges((2, 36), 0x411, {63: 7}) is True
    assert merges((2, 36), 0x421) is True  # tcache[64] is past tcache_bins
    # max_fast: set_max_fast(DEFAULT_MXFAST 64 * SIZE_SZ / 4) = (128 + 8) & ~15 = 0x80
    assert merges((2, 36), 0x81, {6: 7}) is False and merges((2, 36), 0x91, {7: 7}) is True
    # i386: (64 * 4 / 4 + 4) & ~15 = 0x40; MINSIZE 16, so 0x40 is tcache[3]
    assert merges((2, 36), 0x41, {3: 7}, word=4) is False and merges((2, 36), 0x51, {4: 7}, word=4) is True


def test_which_frees_reach_the_merging_path_2_42():
    # 2.42: tcache_index(size) as glibc's csize2tidx; a chunk fits while size < tcache_max_bytes
    assert merges((2, 42), 0x401) is False  # 0x400 < 1032
    assert merges((2, 42), 0x411) is True  # 0x410 = 1040: not below tcache_max_bytes
    assert merges((2, 42), 0x31, {1: 7}) is False  # fast
    assert merges((2, 42), 0x401, {62: 7}) is True


def test_a_bin_never_counted_and_no_fast_bins():
    # mp_.tcache_count 1: an empty tcache[7] (count 0) takes a 0x90 chunk; a full one (1) does not
    assert merges((2, 36), 0x91, tcache_count=1) is False
    assert merges((2, 36), 0x91, {7: 1}, tcache_count=1) is True
    # 2.43 has no fast bins: a 0x30 chunk the full tcache does not take reaches the merging path
    assert merges((2, 43), 0x31, {1: 16}) is True
    assert merges((2, 43), 0x31, {1: 15}) is False  # tcache_fill is 16 from 2.43
