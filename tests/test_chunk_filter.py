"""`heap chunks`' filters (views.ChunkFilter, ChunkRows) on the heap of tests/test_check_exact.py,
laid out by hand: FIRST 0x290 in use, USED 0x20 in use, TCACHE 0x30 tcache[1], FAST 0x20 fast[0],
USED2 0x20 in use, SMALL 0x100 small[16], AFTER 0x20 in use, TOP 0xbc0 top."""

from typing import List

import pytest

from gdb_heap import views
from gdb_heap.views import ChunkFilter
from tests.test_check_exact import AFTER, FAST, FIRST, SMALL, TCACHE, TOP, USED, USED2, heap


def shown(only: ChunkFilter, limit=None) -> List[int]:
    h = heap().heap()
    rows = views.ChunkRows(h, h.main_arena, limit, only)
    return [r[0] for r in rows]


@pytest.mark.parametrize("only, want", [
    (ChunkFilter(), [FIRST, USED, TCACHE, FAST, USED2, SMALL, AFTER, TOP]),
    (ChunkFilter(state="in_use"), [FIRST, USED, USED2, AFTER]),
    (ChunkFilter(state="free"), [TCACHE, FAST, SMALL]),
    (ChunkFilter(state="top"), [TOP]),
    (ChunkFilter(bin="fast"), [FAST]),
    (ChunkFilter(bin="small"), [SMALL]),
    (ChunkFilter(bin="large"), []),
    (ChunkFilter(min_size=0x30), [FIRST, TCACHE, SMALL, TOP]),  # at least: 0x30 itself is in
    (ChunkFilter(max_size=0x30), [USED, TCACHE, FAST, USED2, AFTER]),  # at most: 0x30 itself is in
    (ChunkFilter(min_size=0x30, max_size=0x100), [TCACHE, SMALL]),
    (ChunkFilter(start=FAST), [FAST, USED2, SMALL, AFTER, TOP]),  # --from: at or after
    (ChunkFilter(end=FAST), [FIRST, USED, TCACHE]),  # --to: before
    (ChunkFilter(start=TCACHE, end=SMALL, state="in_use"), [USED2]),
])
def test_each_condition(only, want):
    assert only.active == (only != ChunkFilter())
    assert shown(only) == want


def test_the_limit_counts_accepted_chunks():
    h = heap().heap()
    rows = views.ChunkRows(h, h.main_arena, 2, ChunkFilter(state="in_use"))
    assert [r[0] for r in rows] == [FIRST, USED] and rows.stopped
    rows = views.ChunkRows(h, h.main_arena, 4, ChunkFilter(state="in_use"))
    assert [r[0] for r in rows] == [FIRST, USED, USED2, AFTER] and not rows.stopped  # exactly all: not cut
    rows = views.ChunkRows(h, h.main_arena, 0, ChunkFilter(state="free"))
    assert list(rows) == [] and rows.stopped


def test_rows_carry_the_classification():
    h = heap().heap()
    rows = list(views.ChunkRows(h, h.main_arena, None, ChunkFilter(state="free")))
    assert rows == [(TCACHE, 0x31, "free", "tcache", 1), (FAST, 0x21, "free", "fast", 0),
                    (SMALL, 0x101, "free", "small", 16)]


def test_batches_of_the_accepted_rows():
    h = heap().heap()
    batches = list(views.ChunkRows(h, h.main_arena, None, ChunkFilter(max_size=0x20)).batches())
    assert batches == [([USED, FAST, USED2, AFTER], [0x21, 0x21, 0x21, 0x20])]
    assert list(views.ChunkRows(h, h.main_arena, None, ChunkFilter(bin="large")).batches()) == []
