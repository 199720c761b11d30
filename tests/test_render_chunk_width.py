"""heap chunks' lines within a width, exact: the data column gets what the heading leaves.

x86-64: the heading "chunk user size flg state data" is 14 + 1 + 14 + 1 + 7 + 1 + 3 + 1 + 15 + 1
+ "data" = 62 columns, so the data column starts at 58 and has width - 58 columns (80: 22).  A
word is 18 columns ("0x77202c6f6c6c6568" is "hello, w" little-endian); two words and their 16
characters take 54, two words 37, one word and its 8 characters 27, one word 18."""

from __future__ import annotations

from gdb_heap import render
from gdb_heap.style import Style

PLAIN = Style(False)
RAW = b"hello, world!\x00\x01\xff"
W1 = "0x77202c6f6c6c6568"
HEAD = "0x555555560290 0x5555555602a0    0x20 P.. in use          "
FREE = "0x555555560290 0x5555555602a0    0x20 P.. free fast[0]    "


def lines(width, state="in_use", notes=None, links=None, size_sz=8, rows=None):
    kind, index = ("fast", 0) if state == "free" else (None, None)
    rows = rows or [(0x555555560290, 0x21, state, kind, index)]
    return list(render.chunk_lines(rows, lambda a: RAW, PLAIN, notes=notes, size_sz=size_sz, width=width,
                                   links=links))[1:]


def test_the_data_column_shrinks_to_fit():
    assert lines(None) == [HEAD + f"{W1} 0xff010021646c726f hello, world!..."]
    assert lines(58 + 54) == [HEAD + f"{W1} 0xff010021646c726f hello, world!..."]
    assert lines(58 + 53) == [HEAD + f"{W1} 0xff010021646c726f"]
    assert lines(58 + 27) == [HEAD + f"{W1} hello, w"]
    assert lines(80) == [HEAD + W1]
    assert lines(58 + 17) == [HEAD + "hello, world!..."[:17]]
    assert lines(40) == [HEAD.rstrip()]  # no room at all: no data, no trailing blank


def test_notes_are_cut_to_the_room():
    note = "n" * 22
    assert lines(80, notes={0x555555560290: note}) == [HEAD + note]
    assert lines(80, notes={0x555555560290: note + "x"}) == [HEAD + "n" * 19 + "..."]
    assert lines(None, notes={0x555555560290: note + "x"}) == [HEAD + note + "x"]
    assert lines(50, notes={0x555555560290: note}) == [HEAD + "..."]


def test_link_names_after_a_word_when_they_fit():
    named = "fd: 0x555555560290 (x)"  # 22 columns

    def links(address, kind, raw):
        assert (address, kind, raw) == (0x555555560290, "fast", RAW)
        return named

    # width 100: room 42; after the name and two blanks, 18 columns: one word
    assert lines(100, "free", links=links) == [FREE + f"{W1}  {named}"]
    # width 99: 17 columns left: no room for a word: the name is dropped, the data fills the room (41:
    # two words)
    assert lines(99, "free", links=links) == [FREE + f"{W1} 0xff010021646c726f"]
    assert lines(None, "free", links=links) == [FREE + f"{W1} 0xff010021646c726f hello, world!...  {named}"]
    assert lines(None, links=links) == [HEAD + f"{W1} 0xff010021646c726f hello, world!..."]  # in use: no links


def test_i386_columns():
    out = list(render.chunk_lines([(0x5655a000, 0x11, "in_use", None, None)], lambda a: b"ABCDEFGH", PLAIN,
                                  size_sz=4))
    assert out == ["chunk      user          size flg state           data",
                   "0x5655a000 0x5655a008    0x10 P.. in use          0x44434241 0x48474645 ABCDEFGH"]


def test_each_flag_combination_and_top():
    rows = [(0x1000 + 0x20 * bits, 0x20 | bits, "in_use", None, None) for bits in range(8)]
    flags = [line.split()[3] for line in lines(None, rows=rows)]
    assert flags == ["...", "P..", ".M.", "PM.", "..N", "P.N", ".MN", "PMN"]
    top = lines(None, rows=[(0x555555560290, 0x7E1, "top", None, None)])
    assert top == ["0x555555560290 0x5555555602a0   0x7e0 P.. top"]
