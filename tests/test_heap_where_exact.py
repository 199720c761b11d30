"""Heap.chunk_where / header_at where the walk broke inside a heap, and Heap.top, exact: on
tests/test_places.py's heap (glibc 2.36, x86-64): the tcache struct's chunk at sbrk_base
(0x290 bytes), then `used` 0x40, a tcache 0x30, a guard 0x20, top; user data is 'A's."""

import pytest

from gdb_heap.errors import HeapError
from gdb_heap.model import Problem
from tests.synthetic import uninitialised_image
from tests.test_places import built

NOT_REACHED = ("not reached by the heap walk of the region {:#x}-{:#x}: the walk broke before it (heap check); "
               "this is the header as memory holds it")


def test_a_header_past_where_the_walk_broke():
    s, c = built()
    s.poke(c["used"] + 8, 0x9)  # below MINSIZE: the walk breaks at `used`
    w = s.heap().chunk_where(c["used"] + 0x18)
    # no bin lists used + 8 or used + 0x18; the word after used + 8 is 'AAAAAAAA', 0x4141414141414141:
    # a size glibc could write (0x4141414141414140 with PREV_INUSE): used + 8 is taken as the header
    assert (w.chunk, w.size_field, w.state, w.bin, w.reached, w.size_checked) == (
        c["used"] + 8, 0x4141414141414141, "in_use", None, False, False)
    assert w.arena is not None and w.arena.address == s.arena
    assert w.notes == [NOT_REACHED.format(s.sbrk_base, s.heap_end)]
    assert w.problems == [Problem(c["used"] + 8, f"chunk {c['used'] + 8:#x} is not aligned to 16 bytes as "
                                                    "glibc's chunks are")]


def test_the_heaps_first_chunk_broken():
    """The first chunk of the heap is still in the heap (first_chunk <= chunk)."""
    s, c = built()
    s.poke(s.sbrk_base + 8, 0x9)
    heap = s.heap()
    w = heap.header_at(s.sbrk_base, None)
    assert w is not None
    assert (w.chunk, w.size_field, w.state, w.arena is not None) == (s.sbrk_base, 0x9, "in_use", True)
    assert w.notes == [NOT_REACHED.format(s.sbrk_base, s.heap_end)]
    assert [p.message for p in w.problems] == [
        f"chunk {s.sbrk_base:#x} has size field 0x9, not one glibc writes for a heap chunk (at least 0x20, a "
        "multiple of 16, IS_MMAPPED clear)"]
    top = heap.header_at(s.top + 0x10, None)  # top's user pointer
    assert top is not None and (top.chunk, top.state, top.bin) == (s.top, "top", None)
    listed = heap.header_at(c["tcache"] + 0x10, None)
    assert listed is not None and (listed.state, listed.bin, listed.bin_index) == ("free", "tcache", 1)


def test_top_of_an_uninitialised_heap_is_an_error_saying_what_to_do():
    s = uninitialised_image()
    heap = s.heap()
    with pytest.raises(HeapError) as e:
        heap.top(heap.main_arena)
    assert str(e.value) == ("the heap is not initialised yet: the program has not called malloc; continue past its "
                            "first malloc")


def test_top_is_in_its_region():
    s, _ = built()
    heap = s.heap()
    t = heap.top(heap.main_arena)
    assert (t.address, t.size, t.end) == (s.top, s.top_size, s.heap_end)
    assert t.region is not None and (t.region.start, t.region.end) == (s.sbrk_base, s.heap_end)
