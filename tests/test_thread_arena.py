"""A thread arena laid out by hand (glibc 2.36, x86-64), as glibc's new_heap/_int_new_arena
leave it, next to the main arena of tests/synthetic.py:

    heap_info at H = 0x7ffff0000000 (HEAP_MAX_SIZE 64 MiB aligned): ar_ptr, prev, size,
        mprotect_size, pagesize, pad[-3 * SIZE_SZ & 15] = 8 bytes: 0x30 bytes
    its malloc_state right after, at H + 0x30 (0x898 bytes, to H + 0x8c8)
    the first chunk where chunk2mem is 16-aligned: H + 0x8d0
    H + 0x8d0  0x30  in use (NON_MAIN_ARENA | PREV_INUSE)
    H + 0x900  0x30  in use
    H + 0x930  top, to H + 0x21000 (the heap's size; all of it mprotected read-write)
"""

from typing import List

from gdb_heap.check import check_arena
from gdb_heap.heap import Heap
from gdb_heap.memory import ImageMemory, Reader
from gdb_heap.model import Problem
from tests.synthetic import every_bin_heap

H = 0x7FFFF0000000
ARENA_T = H + 0x30
SIZE = 0x21000
# malloc_state (2.27+, x86-64): mutex, flags, have_fastchunks, pad: 16; fastbinsY[10]: 80; top, last_remainder;
# bins[254]; binmap[4] (4 bytes each); next, next_free, attached_threads, system_mem, max_system_mem
TOP, BINS, NEXT, NEXT_FREE, ATTACHED, SYSTEM_MEM, MAX_SYSTEM_MEM = 0x60, 0x70, 0x870, 0x878, 0x880, 0x888, 0x890


def with_thread_arena(info_ar_ptr: int = ARENA_T, prev: int = 0, info_size: int = SIZE, mprotect_size: int = SIZE,
                      fast_free: bool = False):
    """fast_free: the chunk at H + 0x900 freed to fastbinsY[1] (x86-64: (0x30 >> 4) - 2), alone:
    its fd NULL, safe-linked ((H + 0x910) >> 12)."""
    _, s = every_bin_heap((2, 36), 8)
    heap = bytearray(SIZE)

    def put(address: int, value: int) -> None:
        heap[address - H:address - H + 8] = value.to_bytes(8, "little")

    put(H, info_ar_ptr)
    put(H + 8, prev)
    put(H + 16, info_size)
    put(H + 24, mprotect_size)
    put(H + 32, 0x1000)
    a = ARENA_T
    put(a + TOP, H + 0x930)
    for i in range(1, 128):  # every bin empty: fd = bk = bin_at(i)
        header = a + BINS + 2 * (i - 1) * 8 - 16
        put(a + BINS + 2 * (i - 1) * 8, header)
        put(a + BINS + 2 * (i - 1) * 8 + 8, header)
    put(a + NEXT, s.arena)  # the ring: main -> thread -> main
    put(a + ATTACHED, 1)
    put(a + SYSTEM_MEM, SIZE)
    put(a + MAX_SYSTEM_MEM, SIZE)
    put(H + 0x8D0 + 8, 0x30 | 4 | 1)
    put(H + 0x900 + 8, 0x30 | 4 | 1)
    put(H + 0x930 + 8, (SIZE - 0x930) | 4 | 1)
    if fast_free:
        put(a + 16 + 8, H + 0x900)
        put(H + 0x910, (H + 0x910) >> 12)
    s.poke(s.arena + NEXT, ARENA_T)
    mem = ImageMemory({s.sbrk_base: s.heap_bytes, s.libc_base: s.libc_bytes, H: heap})
    return s, Heap(Reader(mem, 8), s.layout, s.anchors)


def test_the_offsets_used_above():
    _, s = every_bin_heap((2, 36), 8)
    L = s.layout
    assert L.heap_info.size == 0x30 and L.malloc_state.size == 0x898 and L.heap_max_size == 64 << 20
    assert [L.malloc_state.offset(f) for f in ("top", "bins", "next", "next_free", "attached_threads",
                                               "system_mem", "max_system_mem")] == [
        TOP, BINS, NEXT, NEXT_FREE, ATTACHED, SYSTEM_MEM, MAX_SYSTEM_MEM]


def test_thread_arena_heap_and_chunks():
    s, heap = with_thread_arena()
    assert [a.address for a in heap.arenas] == [s.arena, ARENA_T]
    arena = heap.arenas[1]
    assert not arena.main and arena.problems == []
    (region,) = arena.heaps
    assert (region.start, region.end, region.first_chunk, region.heap_info, region.fenceposts, region.info_size,
            region.mprotect_size) == (H, H + SIZE, H + 0x8D0, H, False, SIZE, SIZE)
    problems: List[Problem] = []
    assert list(heap.chunks(arena, problems)) == [(H + 0x8D0, 0x35), (H + 0x900, 0x35), (H + 0x930, (SIZE - 0x930) | 5)]
    assert problems == []
    assert check_arena(heap, arena).problems == []
    top = heap.top(arena)
    assert (top.address, top.size, top.end, top.region) == (H + 0x930, SIZE - 0x930, H + SIZE, region)


def test_top_running_past_the_heap_info_size():
    """The newest heap ends where top ends, even past heap_info.size (heap check names it)."""
    _, heap = with_thread_arena(info_size=SIZE - 0x1000)
    arena = heap.arenas[1]
    assert (arena.heaps[0].end, arena.heaps[0].info_size) == (H + SIZE, SIZE - 0x1000)
    assert check_arena(heap, arena).problems == [
        Problem(H + 0x930, f"top chunk {H + 0x930:#x} of size {SIZE - 0x930:#x} ends at {H + SIZE:#x}, but its "
                           f"heap ends at {H + SIZE - 0x1000:#x}", None)]


def test_heap_info_of_another_arena():
    _, heap = with_thread_arena(info_ar_ptr=0x7FFFE8000030)
    arena = heap.arenas[1]
    assert arena.heaps == []
    assert arena.problems[0] == Problem(H, f"heap_info at {H:#x} names arena 0x7fffe8000030, not {ARENA_T:#x}; "
                                           "older heaps are not shown", None)


def test_unreadable_older_heap():
    _, heap = with_thread_arena(prev=0x7FFFEC000000)
    arena = heap.arenas[1]
    assert [r.start for r in arena.heaps] == [H]
    assert arena.problems[0] == Problem(0x7FFFEC000000, "heap_info at 0x7fffec000000 is not readable; older heaps "
                                                        "are not shown", None)


def test_heap_info_prev_loop_stops():
    _, heap = with_thread_arena(prev=H)
    assert [r.start for r in heap.arenas[1].heaps] == [H]
