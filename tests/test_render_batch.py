"""`heap chunks`' lines and JSON objects a walk batch at a time (render.ChunkLister.batch,
render.chunks_json_batch), on a batch laid out by hand (glibc 2.36, x86-64): every line below
is written out here, worked out from the bytes placed in memory, not taken from gdb_heap.

    0x555555560290  0x20  in use   user data "hello, world!\\0\\1\\xff"
    0x5555555602b0  0x30  free, tcache[1]: next NULL ((0x5555555602c0 >> 12) ^ 0 stored), key
                          0x1122334455667788
    0x5555555602e0  0x20  in use   zeros
    0x555555560300  0x500 free, unsorted: fd = bk = &main_arena's bin_at(1), 0x7ffff7e10ce0
    0x555555560800  0x20  in use, PREV_INUSE clear, zeros
    0x555555560820  top, 0x7e0 bytes
"""

import json
import re
from typing import Dict, List, Optional, Tuple

import pytest

from gdb_heap import render
from gdb_heap.style import Style

PLAIN = Style(False)
FIRST = 0x555555560290
ADDRESSES = [0x555555560290, 0x5555555602B0, 0x5555555602E0, 0x555555560300, 0x555555560800, 0x555555560820]
SIZES = [0x21, 0x31, 0x21, 0x501, 0x20, 0x7E1]
SPECIAL: Dict[int, Tuple[str, Optional[str], Optional[int]]] = {
    1: ("free", "tcache", 1), 3: ("free", "unsorted", 1), 5: ("top", None, None)}
BIN_AT_1 = 0x7FFFF7E10CE0


def memory() -> bytes:
    """The batch's memory from the first chunk's user pointer (0x5555555602a0) to the last
    chunk's (top's) header end, 0x555555560830: what the command reads from the walk's block."""
    data = bytearray(0x555555560830 - 0x5555555602A0)

    def put(address: int, raw: bytes) -> None:
        data[address - 0x5555555602A0:address - 0x5555555602A0 + len(raw)] = raw

    put(0x5555555602A0, b"hello, world!\x00\x01\xff")
    put(0x5555555602C0, (0x5555555602C0 >> 12).to_bytes(8, "little") + (0x1122334455667788).to_bytes(8, "little"))
    put(0x555555560310, BIN_AT_1.to_bytes(8, "little") * 2)
    return bytes(data)


def links(address: int, kind: Optional[str], raw: bytes) -> str:
    """A stand-in namer: what it was given, so the lines show the right bytes reached it."""
    return f"{kind} {raw[:8].hex()}"


EXPECTED = [
    # "hello, w" as a little-endian word is 0x77202c6f6c6c6568
    "0x555555560290 0x5555555602a0    0x20 P.. in use          0x77202c6f6c6c6568 0xff010021646c726f "
    "hello, world!...",
    # the stored next word 0x555555560 is 60 55 55 55 05 00 00 00 in memory: "`UUU...."; the key
    # 88 77 66 55 44 33 22 11: ".wfUD3\"."; the links after two blanks
    "0x5555555602b0 0x5555555602c0    0x30 P.. free tcache[1]  0x0000000555555560 0x1122334455667788 "
    "`UUU.....wfUD3\".  tcache 6055555505000000",
    "0x5555555602e0 0x5555555602f0    0x20 P.. in use          0x0000000000000000 0x0000000000000000 "
    "................",
    "0x555555560300 0x555555560310   0x500 P.. free unsorted   0x00007ffff7e10ce0 0x00007ffff7e10ce0 "
    "................  unsorted e00ce1f7ff7f0000",
    "0x555555560800 0x555555560810    0x20 ... in use          0x0000000000000000 0x0000000000000000 "
    "................",
    "0x555555560820 0x555555560830   0x7e0 P.. top",
]


def no_preview(address: int) -> bytes:
    raise AssertionError(f"the preview of {address:#x} is in the batch's memory")


def test_batch_lines():
    lister = render.ChunkLister(PLAIN, {}, 8, "little", None, links, 16)
    assert lister.batch(ADDRESSES, SIZES, SPECIAL, memory(), no_preview) == EXPECTED


def test_batch_lines_within_a_width_that_fits_them():
    # 200 columns: the data column has 200 - 58 = 142, room for every word, the ASCII and the links
    lister = render.ChunkLister(PLAIN, {}, 8, "little", 200, links, 16)
    assert lister.batch(ADDRESSES, SIZES, SPECIAL, memory(), no_preview) == EXPECTED


def test_batch_chunk_past_the_memory_given_and_a_note():
    # memory only up to 0x555555560560: the chunk at 0x555555560800 (and top) lie past it
    read: List[int] = []

    def preview(address: int) -> bytes:
        read.append(address)
        return b"ABCDEFGH" + bytes(8)

    lister = render.ChunkLister(PLAIN, {0x5555555602E0: "(a note)"}, 8, "little", None, links, 16)
    lines = lister.batch(ADDRESSES, SIZES, SPECIAL, memory()[:0x2C0], preview)
    assert read == [0x555555560800]  # top shows no data
    assert lines == EXPECTED[:2] + [
        "0x5555555602e0 0x5555555602f0    0x20 P.. in use          (a note)", EXPECTED[3],
        "0x555555560800 0x555555560810    0x20 ... in use          0x4847464544434241 0x0000000000000000 "
        "ABCDEFGH........", EXPECTED[5]]


def test_batch_without_preview_bytes():
    # preview-bytes 0: no data column, as the per-row lines have none
    lister = render.ChunkLister(PLAIN, {}, 8, "little", None, None, 0)
    lines = lister.batch(ADDRESSES[:1], SIZES[:1], {}, b"", lambda a: b"")
    assert lines == ["0x555555560290 0x5555555602a0    0x20 P.. in use"]


def test_batch_lines_coloured():
    pytest.importorskip("pygments")
    lister = render.ChunkLister(Style(True), {}, 8, "little", None, links, 16)
    lines = lister.batch(ADDRESSES, SIZES, SPECIAL, memory(), no_preview)
    # (top's padded state keeps its blanks inside its colour, as in the line of one row)
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in lines] == EXPECTED
    assert all(line.startswith("\x1b[") for line in lines)  # the address in its colour


def test_json_batch():
    docs = [json.loads(text) for text in render.chunks_json_batch(ADDRESSES, SIZES, SPECIAL, 8)]
    common = {"prev_inuse": True, "is_mmapped": False, "non_main_arena": False, "bin": None, "bin_index": None}
    assert docs == [
        dict(common, address=0x555555560290, size=0x20, state="in_use", user_address=0x5555555602A0,
             usable_size=0x18),
        dict(common, address=0x5555555602B0, size=0x30, state="free", bin="tcache", bin_index=1,
             user_address=0x5555555602C0, usable_size=0x28),
        dict(common, address=0x5555555602E0, size=0x20, state="in_use", user_address=0x5555555602F0,
             usable_size=0x18),
        dict(common, address=0x555555560300, size=0x500, state="free", bin="unsorted", bin_index=1,
             user_address=0x555555560310, usable_size=0x4F8),
        dict(common, address=0x555555560800, size=0x20, prev_inuse=False, state="in_use",
             user_address=0x555555560810, usable_size=0x18),
        dict(common, address=0x555555560820, size=0x7E0, state="top", user_address=0x555555560830,
             usable_size=0x7D8),
    ]


def test_json_batch_odd_sizes():
    # IS_MMAPPED in a size (damage in a heap): usable is size - 2 * SIZE_SZ; a size 0 (the chunk
    # that broke a walk) has no usable bytes; N and M as stored
    docs = [json.loads(text) for text in render.chunks_json_batch([0x1000, 0x23000], [0x22000 | 7, 0x0], {}, 8)]
    assert [(d["size"], d["usable_size"], d["is_mmapped"], d["non_main_arena"]) for d in docs] == [
        (0x22000, 0x22000 - 16, True, True), (0, 0, False, False)]
    assert render.chunks_json_batch([], [], {}, 8) == []


def test_json_batch_of_many_sizes_stays_exact_and_bounded():
    # A damaged heap may give every chunk its own size: the parts looked up per size are
    # started afresh past 4096 sizes, and each object still says its own size and state.
    for batch in range(3):
        sizes = [0x20 + 0x10 * (batch * 3000 + k) | 1 for k in range(3000)]
        addresses = [0x10000000 + 0x100000 * k for k in range(3000)]
        docs = [json.loads(t) for t in render.chunks_json_batch(addresses, sizes, {7: ("free", "small", 9)}, 8)]
        assert [d["size"] for d in docs] == [s & ~7 for s in sizes]
        assert [d["usable_size"] for d in docs] == [(s & ~7) - 8 for s in sizes]
        assert docs[7]["state"] == "free" and docs[7]["bin_index"] == 9 and docs[8]["state"] == "in_use"
        assert len(render._JSON_PARTS[8]) <= 4096 + 3000


def shortest_links(address: int, kind: Optional[str], raw: bytes) -> str:
    return "fd 0x1"  # the shortest a namer gives (a link of 1)


@pytest.mark.parametrize("preview_bytes", [16, 32, 8])
@pytest.mark.parametrize("coloured", [False, True])
@pytest.mark.parametrize("namer", [links, shortest_links])
@pytest.mark.parametrize("first", [FIRST, 0x4052A0, (1 << 44) - 0x300])
def test_batch_lines_are_each_rows_line_at_every_width(preview_bytes, coloured, namer, first):
    """The batch path (the in-use lines formatted together, the free chunks' links named together)
    gives, at any width, what line() gives of each row alone, which always names a free chunk's
    links and shows them only if they fit (links_fit True: as line() did before it skipped links
    that never fit).  The same chunks at a PIE heap's addresses (each as wide as the address
    column), at a non-PIE heap's (narrower: padded), and across 1 << 44, where the addresses
    of one batch grow a digit."""
    if coloured:
        pytest.importorskip("pygments")
    style = Style(coloured)
    mem = memory()
    shift = first - FIRST
    addresses = [a + shift for a in ADDRESSES]

    def read_preview(address: int) -> bytes:
        off = address - shift + 16 - 0x5555555602A0
        return mem[off:off + preview_bytes]

    notes = {0x5555555602E0 + shift: "(a note)"}
    for width in [None, *range(20, 230)]:
        lister = render.ChunkLister(style, notes, 8, "little", width, namer, preview_bytes)
        reference = render.ChunkLister(style, notes, 8, "little", width, namer, preview_bytes)
        reference.links_fit = True
        expected = [reference.line(a, s, *SPECIAL.get(i, ("in_use", None, None)), read_preview)
                    for i, (a, s) in enumerate(zip(addresses, SIZES))]
        assert lister.batch(addresses, SIZES, SPECIAL, mem, read_preview) == expected, width
        # the batch path from a room of one column (one character of ASCII) on
        assert (lister.batch_format is not None) == (width is None or width - len(render.chunk_columns(8)[1]) + 4 >= 1)


def test_preview_shown_is_what_preview_shows():
    # the words and ASCII preview() gives 2 and 4 words of 8 bytes, 2 of 4, within each room
    for k, S in ((2, 8), (4, 8), (2, 4), (1, 8)):
        raw = bytes(range(0x41, 0x41 + k * S))
        for room in [None, *range(0, 120)]:
            n, m = render.preview_shown(k, S, room)
            words = [f"{w:#0{2 + 2 * S}x}" for w in render.words_of(raw, S)][:n]
            assert render.preview(raw, S, "little", room) == " ".join(words + [raw[:m].decode()] * (m > 0)), room
