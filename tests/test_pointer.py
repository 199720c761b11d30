"""gdb_heap.pointer (the convenience functions' cheap chunk lookup) on the heap of
tests/test_check_exact.py, laid out by hand (glibc 2.36, x86-64):

    0x555555560290  0x20   in use          0x5555555602e0  0x20   fast[0]
    0x5555555602b0  0x30   tcache[1]       0x555555560300  0x20   in use
    0x555555560320  0x100  small[16]       0x555555560420  0x20   in use (PREV_INUSE clear)

and an mmapped chunk written here at 0x7ffff7d00000 (0x2000 bytes, IS_MMAPPED)."""

from dataclasses import replace

import pytest

from gdb_heap import pointer
from gdb_heap.errors import HeapError
from gdb_heap.heap import Heap
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic
from tests.test_check_exact import AFTER, FAST, SMALL, TCACHE, USED, USED2, heap

MMAPPED = 0x7FFFF7D00000


def with_mmapped(s: Synthetic, size_field: int = 0x2002, length: int = 0x2000) -> Heap:
    page = bytearray(length)
    page[8:16] = size_field.to_bytes(8, "little")
    mem = ImageMemory({s.sbrk_base: s.heap_bytes, s.libc_base: s.libc_bytes, MMAPPED: bytes(page)})
    return Heap(Reader(mem, 8), s.layout, s.anchors)


@pytest.mark.parametrize("chunk, size", [(USED, 0x20), (TCACHE, 0x30), (SMALL, 0x100), (AFTER, 0x20)])
def test_resolve_a_user_pointer_and_a_chunk_address(chunk, size):
    h = heap().heap()
    for p in (pointer.resolve(h, chunk + 16), pointer.resolve(h, chunk, as_chunk=True)):
        assert (p.chunk, p.size, p.arena is h.main_arena, p.is_mmapped) == (chunk, size, True, False)
    assert pointer.resolve(h, USED + 16).size_field == 0x21


@pytest.mark.parametrize("field", [0x19, 0x11, 0x28 | 1, 0x20 | 4])  # below MINSIZE, unaligned, NON_MAIN_ARENA
def test_resolve_refuses_a_header_glibc_would_not_write(field):
    s = heap()
    s.poke(USED2 + 8, field)
    with pytest.raises(HeapError) as e:
        pointer.resolve(s.heap(), USED2 + 16)
    assert str(e.value) == (f"no chunk header for the user pointer {USED2 + 16:#x} (size field {field:#x}); for a "
                            "chunk address, add \"chunk\" as a second argument; heap chunk ADDR shows what is there")
    with pytest.raises(HeapError) as e:
        pointer.resolve(s.heap(), USED2, as_chunk=True)
    assert str(e.value).startswith(f"no chunk header for the chunk address {USED2:#x} ")
    assert "for a user pointer (drop \"chunk\")" in str(e.value)


def test_resolve_refuses_a_chunk_past_its_heaps_end():
    s = heap()
    end = s.heap_end
    s.poke(AFTER + 8, (end - AFTER + 16) | 1)  # 16 bytes past the heap's end
    with pytest.raises(HeapError):
        pointer.resolve(s.heap(), AFTER + 16)
    s.poke(AFTER + 8, (end - AFTER) | 1)  # exactly to the end: fits
    assert pointer.resolve(s.heap(), AFTER + 16).size == end - AFTER


def test_resolve_outside_every_heap():
    s = heap()
    with pytest.raises(HeapError) as e:
        pointer.resolve(s.heap(), 0x10)
    assert str(e.value) == "0x10 is not readable; give a pointer malloc returned"
    libc = s.libc_base + 0x100  # readable, in no heap, no mmapped header there
    with pytest.raises(HeapError) as e:
        pointer.resolve(s.heap(), libc)
    assert str(e.value) == (f"{libc:#x} is in no heap and is not an mmapped chunk's user pointer; give a pointer "
                            "malloc returned (for a chunk address, add \"chunk\" as a second argument)")


def test_resolve_an_mmapped_chunk():
    s = heap()
    h = with_mmapped(s)
    p = pointer.resolve(h, MMAPPED + 16)
    assert (p.chunk, p.size, p.arena, p.is_mmapped) == (MMAPPED, 0x2000, None, True)
    assert pointer.resolve(h, MMAPPED, as_chunk=True).chunk == MMAPPED
    with pytest.raises(HeapError):  # its size reaches past the readable page
        pointer.resolve(with_mmapped(s, 0x3002), MMAPPED + 16)


@pytest.mark.parametrize("chunk, usable", [(USED, 0x18), (TCACHE, 0x28), (FAST, 0x18), (USED2, 0x18),
                                           (SMALL, 0), (AFTER, 0x18)])
def test_usable_size(chunk, usable):
    """malloc_usable_size: size - SIZE_SZ where the next chunk has PREV_INUSE (tcache and fast
    chunks keep it set), 0 for the small bin's chunk (0x420 has it clear)."""
    h = heap().heap()
    assert pointer.usable_size(h, pointer.resolve(h, chunk + 16)) == usable


@pytest.mark.parametrize("version, field, usable", [((2, 36), 0x2002, 0x2000 - 16),
                                                    ((2, 43), 0x1FF2, 0x1FF0 - 8)])
def test_usable_size_of_an_mmapped_chunk(version, field, usable):
    """One page pair mapped: up to 2.42 the chunk is all of it (usable: size - 2 * SIZE_SZ); from
    2.43 a header of its own ends the mapping, so the chunk is 0x2000 - 16 (usable: size - SIZE_SZ)."""
    b = HeapBuilder(version, 8)
    b.chunk(0x20)
    s = b.build()
    h = with_mmapped(s, field)
    assert pointer.usable_size(h, pointer.resolve(h, MMAPPED + 16)) == usable


def test_usable_size_when_the_next_header_is_unreadable():
    s = heap()
    h = s.heap()
    p = replace(pointer.resolve(h, USED + 16), size_field=0x1000000 | 1)
    with pytest.raises(HeapError) as e:
        pointer.usable_size(h, p)
    assert str(e.value) == f"the chunk after {USED:#x} is not readable; see heap check"


@pytest.mark.parametrize("chunk, held", [(USED, False), (TCACHE, True), (FAST, True), (USED2, False),
                                         (SMALL, True), (AFTER, False)])
def test_held_by_bin(chunk, held):
    h = heap().heap()
    assert pointer.held_by_bin(h, pointer.resolve(h, chunk + 16)) is held


def test_held_by_bin_unsorted_and_mmapped():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    unsorted = b.chunk(0x500, "unsorted")
    large = b.chunk(0x20)
    s = b.build()
    h = s.heap()
    assert pointer.held_by_bin(h, pointer.resolve(h, unsorted + 16)) is True
    assert pointer.held_by_bin(h, pointer.resolve(h, large + 16)) is False
    hm = with_mmapped(s)
    assert pointer.held_by_bin(hm, pointer.resolve(hm, MMAPPED + 16)) is False


def test_held_by_bin_without_a_tcache():
    """The tcache chunk is looked for in its tcache bin only: with no tcache, it is in no bin."""
    s = heap()
    h = Heap(s.reader(), s.layout, replace(s.anchors, tcache=None))
    assert pointer.held_by_bin(h, pointer.resolve(h, TCACHE + 16)) is False
    assert pointer.held_by_bin(h, pointer.resolve(h, FAST + 16)) is True
