"""render_map.py, `heap map`'s text, line by line on a hand-built heap (glibc 2.36, x86-64).

The heap (tests/synthetic.py lays chunks from sbrk_base + 0x290, after the tcache struct):
0x...290 in use 0x20, 0x...2b0 tcache 0x30, 0x...2e0 in use 0xa0, 0x...380 unsorted 0x90,
0x...410 in use 0x20 (PREV_INUSE clear: the unsorted chunk before it is free), top at 0x...430
(0x1000 - 0x430 = 0xbd0 bytes to the end of the first page).  The builder fills user data with
'A'.  A chunk of more than MAP_LINES (8) rows of 16 bytes shows 6 rows, a `:` row for the
rest, and its last row: 0xa0 - 0x60 - 0x10 = 0x30 bytes left out.  The tcache next is
PROTECT_PTR(&next, NULL) = 0x...2c0 >> 12; the unsorted chunk's fd and bk are bin_at(1) =
main_arena + 0x70 - 0x10 = main_arena+96.
"""

from __future__ import annotations

import re

from gdb_heap.heap import Heap
from gdb_heap import render_map, views
from gdb_heap.pointers import Namer
from gdb_heap.style import Style
from gdb_heap.views import Link
from tests.synthetic import HeapBuilder

A16 = "0x4141414141414141 0x4141414141414141"


def heap_of_five():
    b = HeapBuilder((2, 36), 8)
    first = b.chunk(0x20)
    for size, kind in ((0x30, "tcache"), (0xA0, None), (0x90, "unsorted"), (0x20, None)):
        b.chunk(size, kind)
    s = b.build()
    s.poke_bytes(first + 0x10, b"hello, w")
    return s, first


def test_every_row_and_note_with_the_ascii_column():
    s, first = heap_of_five()
    assert first == s.sbrk_base + 0x290 and s.top == s.sbrk_base + 0x430
    heap = s.heap()
    B, ar = s.sbrk_base, s.arena + 0x60
    lines = list(render_map.map_lines(views.map_view(heap, None, first, 6), Style(False), Namer(heap).name, 8))
    assert lines == [
        f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021  ........!.......  0x20 P.. in use",
        f"| {B + 0x2a0:#x} 0x77202c6f6c6c6568 0x4141414141414141  hello, wAAAAAAAA",
        f"+ {B + 0x2b0:#x} 0x0000000000000000 0x0000000000000031  ........1.......  0x30 P.. free tcache[1]",
        f"| {B + 0x2c0:#x} 0x0000000555555560 0x5a5a1234c3c3f00d  `UUU........4.ZZ  "
        "next reveals 0x0: end of list, key (tcache_key)",
        f"| {B + 0x2d0:#x} {A16}  AAAAAAAAAAAAAAAA",
        f"+ {B + 0x2e0:#x} 0x0000000000000000 0x00000000000000a1  ................  0xa0 P.. in use",
        *[f"| {B + off:#x} {A16}  AAAAAAAAAAAAAAAA" for off in range(0x2f0, 0x340, 0x10)],
        ":                ... 0x30 bytes ...",
        f"| {B + 0x370:#x} {A16}  AAAAAAAAAAAAAAAA",
        f"+ {B + 0x380:#x} 0x0000000000000000 0x0000000000000091  ................  0x90 P.. free unsorted",
        f"| {B + 0x390:#x} {ar:#018x} {ar:#018x}  ................  "
        "fd: <main_arena+96> unsorted (bin_at(1)), bk: <main_arena+96> unsorted (bin_at(1))",
        *[f"| {B + off:#x} {A16}  AAAAAAAAAAAAAAAA" for off in range(0x3a0, 0x3e0, 0x10)],
        ":                ... 0x20 bytes ...",
        f"| {B + 0x400:#x} {A16}  AAAAAAAAAAAAAAAA",
        f"+ {B + 0x410:#x} 0x0000000000000090 0x0000000000000020  ........ .......  0x20 ... in use",
        f"| {B + 0x420:#x} {A16}  AAAAAAAAAAAAAAAA",
        f"+ {B + 0x430:#x} 0x0000000000000000 0x0000000000000bd1  ................  0xbd0 P.. top",
    ]


def test_a_narrow_width_drops_the_ascii_and_puts_notes_under_the_words():
    """Width 60: a row is 3 + 14 + 2 * 18 + 1 = 54 columns; the ASCII column needs
    54 + 1 + 16 + 2 + 24 (NOTE_ROOM) = 97.  Notes go on lines of their own, indented past the
    address (14 + 3 columns), the first column the chunk's `|`."""
    s, first = heap_of_five()
    heap = s.heap()
    B = s.sbrk_base
    lines = list(render_map.map_lines(views.map_view(heap, None, first, 3), Style(False), Namer(heap).name, 8,
                                      width=60))
    assert lines[:9] == [
        f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021",
        "|                0x20 P.. in use",
        f"| {B + 0x2a0:#x} 0x77202c6f6c6c6568 0x4141414141414141",
        f"+ {B + 0x2b0:#x} 0x0000000000000000 0x0000000000000031",
        "|                0x30 P.. free tcache[1]",
        f"| {B + 0x2c0:#x} 0x0000000555555560 0x5a5a1234c3c3f00d",
        "|                next reveals 0x0: end of list",
        "|                key (tcache_key)",
        f"| {B + 0x2d0:#x} {A16}",
    ]
    assert lines[-1] == f"(more: heap map {B + 0x380:#x} goes on)"
    # wide enough for the ASCII column and the note on the same line (97 columns exactly)
    wide = list(render_map.map_lines(views.map_view(heap, None, first, 1), Style(False), Namer(heap).name, 8,
                                     width=97))
    assert wide[0] == f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021  ........!.......  0x20 P.. in use"
    narrow = list(render_map.map_lines(views.map_view(heap, None, first, 1), Style(False), Namer(heap).name, 8,
                                       width=96))
    assert narrow[0] == f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021  0x20 P.. in use"


def test_colours_chunk_by_chunk_headers_apart():
    s, first = heap_of_five()
    heap = s.heap()
    style = Style(True)
    lines = list(render_map.map_lines(views.map_view(heap, None, first, 6), style, Namer(heap).name, 8))
    starts = [line for line in lines if re.sub(r"\x1b\[[0-9;]*m", "", line).startswith("+")]

    def first_word_code(line: str) -> str:
        m = re.search(r"((?:\x1b\[[0-9;]*m)+)0x", line)
        assert m is not None, line
        return m.group(1)

    roles = ["map0_header", "map1_header", "map0_header", "map1_header", "map0_header", "top_header"]
    assert [first_word_code(line) for line in starts] == [style.codes(r)[0] for r in roles]
    assert [line.startswith(style.codes(r)[0] + "+") for line, r in zip(starts, ["map0", "map1", "map0", "map1",
                                                                               "map0", "top"])] == [True] * 6
    row = lines[1]  # the first chunk's user data: its own colour, not the header's
    assert first_word_code(row) == style.codes("map0")[0] != style.codes("map0_header")[0]
    d0, d1 = style.codes("dim")
    assert d0 and lines[0].endswith(f"{d0}0x20 P.. in use{d1}")  # notes are dim
    elided = next(line for line in lines if ":" in re.sub(r"\x1b\[[0-9;]*m", "", line)[:1])
    assert elided == style("map0", ":") + " " * 16 + style("dim", "... 0x30 bytes ...")
    more = list(render_map.map_lines(views.map_view(heap, None, first, 1), style, Namer(heap).name, 8))[-1]
    assert more == style("dim", f"(more: heap map {first + 0x20:#x} goes on)")
    narrow = list(render_map.map_lines(views.map_view(heap, None, first, 1), style, Namer(heap).name, 8, width=40))
    assert narrow[1] == style("map0", "|") + style("dim", " " * 16 + "0x20 P.. in use")


def i386_pair() -> tuple[Heap, int]:
    """An i386 heap of a 0x10 chunk then a 0x20 chunk, and the first chunk."""
    b = HeapBuilder((2, 36), 4)
    first = b.chunk(0x10)
    b.chunk(0x20)
    return b.build().heap(), first


def test_i386_header_words_in_colour():
    heap, first = i386_pair()
    style = Style(True)
    line = list(render_map.map_lines(views.map_view(heap, None, first, 1), style, Namer(heap).name, 4))[0]
    h0, h1 = style.codes("map0_header")
    m0, m1 = style.codes("map0")
    assert f"{h0}0x00000000{h1} {h0}0x00000011{h1} {m0}0x41414141{m1} {m0}0x41414141{m1}" in line


def test_an_inline_note_fits_to_the_last_column():
    """Without the ASCII column (under 97 columns) a row is 54 columns; "  0x20 P.. in use" adds
    17: at 71 columns the note stays on the row, at 70 it goes under it.  A long note wraps."""
    s, first = heap_of_five()
    heap = s.heap()
    B = s.sbrk_base

    def at(width, count=1, start=first):
        return list(render_map.map_lines(views.map_view(heap, None, start, count), Style(False),
                                         Namer(heap).name, 8, width=width))

    assert at(71)[0] == f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021  0x20 P.. in use"
    assert at(70)[:2] == [f"+ {B + 0x290:#x} 0x0000000000000000 0x0000000000000021", "|                0x20 P.. in use"]
    unsorted = at(40, 1, B + 0x380)
    # 17 + "fd: <main_arena+96>" is 36 columns; continuations 4 further in: 21 + "unsorted" is 29, and
    # " (bin_at(1))" would make 41
    assert unsorted[3:9] == ["|                fd: <main_arena+96>", "|                    unsorted",
                             "|                    (bin_at(1))", "|                bk: <main_arena+96>",
                             "|                    unsorted", "|                    (bin_at(1))"]


def test_an_unreadable_chunk():
    s, first = heap_of_five()
    heap = s.heap()
    view = views.map_view(heap, None, first, 1)
    view.chunks[0].head, view.chunks[0].tail = b"", b""
    assert list(render_map.map_lines(view, Style(False), Namer(heap).name, 8))[0] == (
        f"+ {first:#x} (not readable)  0x20 P.. in use")


def test_i386_rows_hold_four_words():
    heap, first = i386_pair()
    lines = list(render_map.map_lines(views.map_view(heap, None, first, 1), Style(False), Namer(heap).name, 4))
    # 0x10 bytes: one row: prev_size, size (0x11), then the user's 8 bytes of 'A'
    assert lines[0] == f"+ {first:<#10x} 0x00000000 0x00000011 0x41414141 0x41414141  ........AAAAAAAA  0x10 P.. in use"


def test_no_chunks():
    view = views.MapView(None, [], [], None)  # type: ignore[arg-type]
    assert list(render_map.map_lines(view, Style(False), lambda _: "", 8)) == ["no chunks there"]


def test_link_notes():
    def named(value: int) -> str:
        return {0x1000: "chunk 0x1000 (in use)"}.get(value, "")

    assert render_map.link_note(Link("fd", 0, 0x1000), named) == "fd: chunk 0x1000 (in use)"
    assert render_map.link_note(Link("bk", 0, 0x2000), named) == "bk: 0x2000"
    assert render_map.link_note(Link("fd", 0, 0), named) == "fd: end of list"
    assert render_map.link_note(Link("next", 0, 0x55, 0x1000), named) == "next reveals 0x1000: chunk 0x1000 (in use)"
    assert render_map.link_note(Link("key", 0, 0x1234), named) == "key (tcache_key)"
    assert render_map.link_note(Link("key", 0, 0x1000), named) == "key: chunk 0x1000 (in use)"


def test_map_view_errors_rows_and_problems():
    import pytest

    from gdb_heap.errors import HeapError
    from tests.synthetic import uninitialised_image
    from tests.test_where_mmapped import M, with_mmapped
    u = uninitialised_image()
    with pytest.raises(HeapError) as e:
        views.map_view(u.heap(), None, None, 4)
    assert str(e.value) == ("the heap is not initialised yet: the program has not called malloc; continue past its "
                            "first malloc")
    m = with_mmapped()
    with pytest.raises(HeapError) as e:
        views.map_view(m.heap(), None, M + 0x10, 4)
    assert str(e.value) == (f"{M + 0x10:#x} is in an mmapped chunk, a mapping of its own with no neighbours; see "
                            f"heap chunk {M:#x} --dump")
    b = HeapBuilder((2, 36), 8)
    eight = b.chunk(0x80)  # 8 rows of 16 bytes: shown whole (MAP_LINES is 8)
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    view = views.map_view(heap, None, eight, 1)
    assert view.arena is heap.main_arena and view.problems == [] and view.more == eight + 0x80
    (c,) = view.chunks
    assert (len(c.head), c.tail) == (0x80, b"")
    s.poke(eight + 0x88, 0x9)  # the next chunk's size below MINSIZE: its header only, and the walk's problem
    heap = s.heap()
    view = views.map_view(heap, None, eight, 3)
    assert [len(x.head) for x in view.chunks] == [0x80, 0x10, 0x10]  # top: its header only too
    assert [p.address for p in view.problems] == [eight + 0x80]
