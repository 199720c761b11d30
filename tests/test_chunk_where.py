"""Heap.chunk_where for headers no heap walk vouches for (Heap.header_at), on the heap of
tests/test_check_exact.py laid out by hand: a forged chunk in libc's data that a fast bin lists,
an address inside a chunk whose size broke the walk, and where memory outside the heaps lives."""

from dataclasses import replace
from typing import List, Optional, Tuple

import pytest

from gdb_heap.symbols import Symbol
from gdb_heap.heap import Heap, Location, Where
from gdb_heap.mappings import Mapping
from gdb_heap.model import Problem
from tests.synthetic import Synthetic
from tests.test_check_exact import ARENA, FAKE, USED2, heap

MISALIGNED = "is not aligned to 16 bytes as glibc's chunks are"


def forged_fast_head() -> Synthetic:
    """fastbinsY[0] -> FAKE, a 0x20 chunk written in libc's data, its fd NULL (safe-linked)."""
    s = heap()
    s.poke(ARENA + s.layout.malloc_state.offset("fastbinsY"), FAKE)
    s.poke(FAKE + 8, 0x21)
    s.poke(FAKE + 16, (FAKE + 16) >> 12)
    return s


def summary(w: Where) -> Tuple[int, str, Optional[str], Optional[int], bool, bool, bool]:
    return (w.chunk, w.state, w.bin, w.bin_index, w.reached, w.size_checked, w.arena is None)


@pytest.mark.parametrize("address", [FAKE + 16, FAKE])  # its user pointer, its header
def test_a_forged_chunk_a_bin_lists(address):
    w = forged_fast_head().heap().chunk_where(address)
    assert summary(w) == (FAKE, "free", "fast", 0, False, False, True)
    assert w.notes == ["outside every heap: in no mapping the process lists"]
    assert w.location == Location(None, None, None, None)
    assert w.problems == [Problem(FAKE, f"fast[0] lists chunk {FAKE:#x}, which lies outside every heap (a forged "
                                        "chunk)", None)]


def test_where_the_memory_lives():
    s = forged_fast_head()
    libc = Mapping(s.libc_base, s.libc_base + len(s.libc_bytes), "/usr/lib/libc.so.6")
    anchors = replace(s.anchors, mappings=lambda: ([libc], "test"),
                      symbol=lambda a: Symbol("fake", 0, "fake in section .data") if a == FAKE else None)
    w = Heap(s.reader(), s.layout, anchors).chunk_where(FAKE + 16)
    assert w.location == Location("/usr/lib/libc.so.6", libc.start, libc.end, "fake in section .data")
    assert w.notes == [f"outside every heap: in a mapping of /usr/lib/libc.so.6 ({libc.start:#x}-{libc.end:#x}), "
                       "at fake in section .data"]
    anon = replace(libc, path="")
    w = Heap(s.reader(), s.layout, replace(s.anchors, mappings=lambda: ([anon], "test"))).chunk_where(FAKE + 16)
    assert w.notes == [f"outside every heap: in an anonymous mapping ({libc.start:#x}-{libc.end:#x})"]
    stack = replace(libc, path="[stack]")
    w = Heap(s.reader(), s.layout, replace(s.anchors, mappings=lambda: ([stack], "test"))).chunk_where(FAKE + 16)
    assert w.notes == [f"outside every heap: in the stack ({libc.start:#x}-{libc.end:#x})"]


def test_an_unlisted_header_outside_the_heaps_is_read_as_in_use():
    s = heap()
    s.poke(FAKE + 8, 0x31)  # a plausible size: FAKE + 16 is taken as its user pointer
    w = s.heap().chunk_where(FAKE + 16)
    assert summary(w) == (FAKE, "in_use", None, None, False, False, True)
    assert w.problems == []


def test_an_implausible_header_outside_the_heaps():
    """Neither FAKE - 8 nor FAKE + 8 holds a size glibc writes (both read 0): the address itself
    is taken as the header, misaligned and with a size field of 0."""
    s = heap()
    w = s.heap().chunk_where(FAKE + 8)
    assert summary(w) == (FAKE + 8, "in_use", None, None, False, False, True)
    assert w.problems == [
        Problem(FAKE + 8, f"chunk {FAKE + 8:#x} {MISALIGNED}"),
        Problem(FAKE + 8, f"chunk {FAKE + 8:#x} has size field 0x0, not one glibc writes for a heap chunk (at "
                          "least 0x20, a multiple of 16, IS_MMAPPED clear)"),
    ]


def test_unreadable_memory_outside_the_heaps_is_an_error():
    from gdb_heap.errors import HeapError
    with pytest.raises(HeapError):
        heap().heap().chunk_where(0x10)


def test_inside_a_chunk_whose_size_broke_the_walk():
    """USED2's size 0x1000 runs past the heap: the address 0x18 into it is read as a header of
    its own (at USED2 + 8, where no size glibc writes is found), with why no walk reached it."""
    s = heap()
    s.poke(USED2 + 8, 0x1001)
    w = s.heap().chunk_where(USED2 + 0x18)
    assert summary(w) == (USED2 + 8, "in_use", None, None, False, False, False)
    assert w.notes == [f"not reached by the heap walk: it lies inside chunk {USED2:#x}, whose size 0x1000 broke the "
                       "walk (heap check); this is the header as memory holds it"]
    problems: List[Problem] = w.problems
    assert [p.message for p in problems][0] == f"chunk {USED2 + 8:#x} {MISALIGNED}"
