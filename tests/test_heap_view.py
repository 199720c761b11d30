"""gdb_heap.heap.Heap, the view the commands share: threads' tcaches, the arena chosen, top,
mmapped chunks; on a heap laid out by hand (glibc 2.36, x86-64) with a second thread's
tcache_perthread_struct written into it here, field by field.

    0x555555560000  0x290  the main thread's tcache struct (user data 0x555555560010)
    0x555555560290  0x290  thread 2's tcache struct, in use (user data 0x5555555602a0)
    0x555555560520  0x20   in thread 2's tcache[0]
    0x555555560540  0x30   in the main thread's tcache[1]
    0x555555560570  top
"""

import pytest

from gdb_heap.errors import HeapError
from gdb_heap.heap import Anchors, Heap, ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic

ARENA = 0x7FFFF7E10C80
MAIN_T, OTHER_T, OTHER_CHUNK, MAIN_CHUNK = 0x555555560010, 0x5555555602A0, 0x555555560520, 0x555555560540


def two_threads() -> Synthetic:
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x290)
    b.chunk(0x20)
    b.chunk(0x30, "tcache")
    s = b.build()
    # thread 2's tcache_perthread_struct (0x280 bytes): counts[64] (uint16), then entries[64]
    s.poke_bytes(OTHER_T, bytes(0x280))
    s.poke(OTHER_T + 0, 1, 2)  # counts[0] = 1
    s.poke(OTHER_T + 128, OTHER_CHUNK + 16)  # entries[0]: the user pointer
    s.poke(OTHER_CHUNK + 16, (OTHER_CHUNK + 16) >> 12)  # its next: NULL, safe-linked
    return s


def heap_with(s: Synthetic, threads, **anchors) -> Heap:
    a = Anchors(main_arena=s.arena, mp=s.mp, glibc="2.36", located_by="synthetic", tcache=s.tcache,
                thread_arena=s.arena, threads=lambda: threads, **anchors)
    return Heap(s.reader(), s.layout, a)


def test_every_threads_tcache():
    s = two_threads()
    threads = [ThreadInfo(1, 100, True, None, ARENA), ThreadInfo(2, 101, False, OTHER_T, ARENA),
               ThreadInfo(3, 102, False, None, None), ThreadInfo(4, 103, False, 0x1000, None)]
    heap = heap_with(s, threads)
    got = [(t.thread.num, t.address, [(c.kind, c.index, c.count, c.chunks) for c in t.chains], t.problems)
           for t in heap.thread_tcaches()]
    assert got == [(1, MAIN_T, [("tcache", 1, 1, [MAIN_CHUNK])], []),  # the selected thread: anchors.tcache
                   (2, OTHER_T, [("tcache", 0, 1, [OTHER_CHUNK])], [])]
    index = heap.free_index(heap.main_arena)
    assert index[OTHER_CHUNK] == ("tcache", 0) and index[MAIN_CHUNK] == ("tcache", 1)
    assert [t.num for t in heap.arena_threads(heap.main_arena)] == [1, 2]
    # bins: only the selected thread's tcache
    chains, _ = heap.bins(heap.main_arena)
    assert [(c.kind, c.index) for c in chains] == [("tcache", 1)]


def test_a_tcache_pointer_outside_every_heap_is_no_tcache():
    """glibc 2.43 points tcache at a static dummy until the thread's first free."""
    s = two_threads()
    heap = heap_with(s, [ThreadInfo(1, 100, True, None, ARENA)])
    heap.anchors.tcache = 0x7FFFF7E11000
    assert heap.tcache is None
    assert heap.thread_tcaches() == []
    heap.anchors.tcache = s.first_chunk  # the chunk header itself, not inside the chunk's data
    assert heap.tcache is None


def test_arena_choice_and_unknown_arena():
    s = two_threads()
    heap = heap_with(s, [])
    assert heap.arena().address == ARENA and heap.selected_arena() is heap.main_arena
    heap.anchors.thread_arena = 0x7FFFF0000020  # not in the ring: fall back to the main arena
    assert heap.arena() is heap.main_arena
    with pytest.raises(HeapError) as e:
        heap.arena(0x7FFFF0000020)
    assert str(e.value) == f"0x7ffff0000020 is not an arena (the arenas are {ARENA:#x}); see heap arenas"
    assert heap.arena(ARENA) is heap.main_arena


def test_top():
    s = two_threads()
    heap = heap_with(s, [])
    top = heap.top(heap.main_arena)
    assert (top.arena, top.address, top.size, top.end) == (ARENA, 0x555555560570, 0xA90, 0x555555561000)
    assert top.region is not None and (top.region.start, top.region.end) == (0x555555560000, 0x555555561000)
    s = two_threads()
    s.poke(ARENA + s.layout.malloc_state.offset("top"), 0x10000000)
    heap = heap_with(s, [])
    with pytest.raises(HeapError) as e:
        heap.top(heap.main_arena)
    assert str(e.value) == ("the top chunk at 0x10000000 is not readable; the arena's top pointer is damaged "
                            "(see heap check)")


def test_mmapped_chunks_outside_the_heaps():
    s = two_threads()
    page = bytearray(0x2000)
    page[8:16] = (0x2000 | 2).to_bytes(8, "little")
    mem = ImageMemory({s.sbrk_base: s.heap_bytes, s.libc_base: s.libc_bytes, 0x7FFFF7D00000: bytes(page)})
    maps = [Mapping(s.sbrk_base, s.heap_end, ""), Mapping(0x7FFFF7D00000, 0x7FFFF7D02000, "")]
    a = Anchors(main_arena=s.arena, mp=s.mp, glibc="2.36", located_by="synthetic", tcache=s.tcache,
                mappings=lambda: (maps, "test"))
    heap = Heap(Reader(mem, 8), s.layout, a)
    view = heap.mmapped()
    assert [(c.address, c.mapping_start, c.mapping_end) for c in view.chunks] == [
        (0x7FFFF7D00000, 0x7FFFF7D00000, 0x7FFFF7D02000)]  # the heap's own mapping is skipped
    assert (view.source, view.glibc_count, view.glibc_bytes, view.unreadable) == ("test", 0, 0, [])
    found = heap.where(0x7FFFF7D00010)
    assert (found.chunk, found.how, found.arena, found.state) == (0x7FFFF7D00000, "user_pointer", None, "mmapped")
    found = heap.where(0x7FFFF7D00000)
    assert (found.chunk, found.how) == (0x7FFFF7D00000, "chunk")


def test_where_in_the_heap():
    s = two_threads()
    heap = heap_with(s, [])
    found = heap.where(MAIN_CHUNK + 16)
    assert (found.chunk, found.how, found.arena.address if found.arena else None, found.prev) == (
        MAIN_CHUNK, "user_pointer", ARENA, OTHER_CHUNK)
    found = heap.where(s.first_chunk)
    assert (found.chunk, found.how, found.prev) == (s.first_chunk, "chunk", None)
    found = heap.where(MAIN_CHUNK + 24)  # inside a chunk: 24 past its start, 8 past its user pointer
    assert (found.chunk, found.how, found.offset, found.user_offset) == (MAIN_CHUNK, "inside", 24, 8)
    with pytest.raises(HeapError) as e:
        heap.where(0x10000000)
    assert "0x10000000 is not in any heap of this process; that memory is not readable" in str(e.value)
