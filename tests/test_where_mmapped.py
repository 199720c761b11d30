"""Heap.where on an mmapped chunk added by hand to a synthetic image (x86-64, glibc 2.36): a page
M mapped on its own, its chunk at M (prev_size 0, size 0x2000 | IS_MMAPPED), user data at M + 0x10."""

from __future__ import annotations

import pytest

from gdb_heap.errors import HeapError
from gdb_heap.mappings import Mapping
from tests.test_places import built

M = 0x7FFFF7000000


def with_mmapped(length: int = 0x2000, readable: int = 0x2000):
    s, c = built()
    data = bytearray(readable)
    data[8:16] = (length | 2).to_bytes(8, "little")
    s.memory.add(M, data)
    s.anchors.mappings = lambda: ([Mapping(M, M + readable, "")], "test")
    return s


@pytest.mark.parametrize("address, how", [(M + 0x10, "user_pointer"), (M, "chunk"), (M + 0x100, "inside"),
                                          (M + 0x1FFF, "inside"), (M + 0x8, "inside")])
def test_where_in_an_mmapped_chunk(address, how):
    w = with_mmapped().heap().where(address)
    assert (w.chunk, w.size_field, w.state, w.arena, w.how) == (M, 0x2002, "mmapped", None, how)


def test_past_its_end_is_no_chunk():
    with pytest.raises(HeapError):
        with_mmapped().heap().where(M + 0x2000)


def test_a_header_whose_last_byte_is_not_readable_is_no_chunk():
    heap = with_mmapped(0x3000).heap()  # size says 0x3000 but only 0x2000 bytes are there
    with pytest.raises(HeapError):
        heap.where(M + 0x10)
