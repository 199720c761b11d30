"""Reading glibc's structs from their bytes (model.StructBytes, read_malloc_state,
malloc_state_from, bin_at): the bytes packed here by hand in struct malloc_state's order
(malloc.c), with a distinct value in every field, in both byte orders."""

from __future__ import annotations

import struct

import pytest

from gdb_heap import model
from gdb_heap.layouts import layout_for
from gdb_heap.memory import ImageMemory, Reader
from gdb_heap.model import MallocState, StructBytes

ARENA = 0x7FFFF7E19C80
FAST = tuple(range(0x1000, 0x100A))
BINS = tuple(0x5000 + 8 * k for k in range(254))
BINMAP = (0x11, 0x22, 0x33, 0x44)
TAIL = (ARENA + 0x100000, ARENA + 0x200000, 3, 0x21000, 0x42000)  # next .. max_system_mem


def state_2_36(order: str) -> bytes:
    """mutex, flags, have_fastchunks (int each, then 4 bytes of padding), fastbinsY[10], top,
    last_remainder, bins[254], binmap[4] (unsigned int), next, next_free, attached_threads,
    system_mem, max_system_mem: 2200 bytes on x86_64."""
    return struct.pack(order + "3I4x10Q2Q254Q4I5Q", 7, 0x2, 1, *FAST, 0xAAAA0, 0xBBBB0, *BINS, *BINMAP, *TAIL)


def memory(raw: bytes) -> Reader:
    """`raw` at ARENA, on whole pages (the reader reads whole pages)."""
    base = ARENA & ~0xFFF
    data = bytes(ARENA - base) + raw
    return Reader(ImageMemory({base: data + bytes(-len(data) % 0x1000)}), 8)


EXPECTED = MallocState(ARENA, 0x2, 1, FAST, 0xAAAA0, 0xBBBB0, BINS, BINMAP, *TAIL, mutex=7)


def test_read_malloc_state_2_36():
    raw = state_2_36("<")
    assert len(raw) == 2200
    reader = memory(raw)
    assert model.read_malloc_state(reader, layout_for((2, 36), 8), ARENA) == EXPECTED


def test_malloc_state_from_big_endian_bytes():
    s = StructBytes(None, layout_for((2, 36), 8).malloc_state, ARENA, raw=state_2_36(">"), order="big")
    assert model.malloc_state_from(s, ARENA) == EXPECTED
    assert (s.get("top"), s.array("binmap"), s.get("mutex")) == (0xAAAA0, BINMAP, 7)


def test_malloc_state_2_43_without_fastbins_or_have_fastchunks():
    # 2.43 dropped fastbinsY and have_fastchunks: mutex, flags, then top at 8
    raw = struct.pack("<2I2Q254Q4I5Q", 0, 0x3, 0xAAAA0, 0xBBBB0, *BINS, *BINMAP, *TAIL)
    reader = memory(raw)
    got = model.read_malloc_state(reader, layout_for((2, 43), 8), ARENA)
    assert got == MallocState(ARENA, 0x3, 0, (), 0xAAAA0, 0xBBBB0, BINS, BINMAP, *TAIL, mutex=0)


def test_struct_bytes_fields_by_name():
    layout = layout_for((2, 36), 8).malloc_state
    s = StructBytes(memory(state_2_36("<")), layout, ARENA)
    assert s.has("fastbinsY") and not s.has("tcache_count")
    assert s.array("fastbinsY") == FAST
    assert s.array("no_such_field") == ()
    assert s.get("system_mem") == 0x21000
    values, at = s.whole()
    assert at["bins"] == (1 + 1 + 1 + 10 + 2, 254)  # mutex, flags, have_fastchunks, fastbinsY, top, last_remainder
    assert values[at["next"][0]] == ARENA + 0x100000


@pytest.mark.parametrize("word, index, expected", [
    # bin_at(m, i): &m->bins[2 * (i - 1)] less offsetof(struct malloc_chunk, fd) (2 * SIZE_SZ)
    (8, 1, ARENA + 0x70 - 0x10), (8, 2, ARENA + 0x70), (8, 126, ARENA + 0x70 + 125 * 0x10 - 0x10),
    # i386: the ints, fastbinsY[11] and two pointers come to 64 bytes before bins
    (4, 1, ARENA + 0x40 - 0x8), (4, 64, ARENA + 0x40 + 63 * 0x8 - 0x8),
])
def test_bin_at(word, index, expected):
    assert model.bin_at(layout_for((2, 36), word), ARENA, index) == expected
