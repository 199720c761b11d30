"""The heap walk after damage: it resumes where the bins (or top) say the heap carries on.

Unit tests on synthetic heaps (tests/synthetic.py): the truth is the builder's record of
what it laid out, and the damage is written by hand here.  Every consumer of the walk
(heap.chunks, summarise, check, where) must see the same resumed chunks.
"""

from __future__ import annotations

from collections import Counter
from typing import List

import pytest

from gdb_heap import model
from gdb_heap.check import check_arena
from gdb_heap.heap import Heap
from gdb_heap.model import Problem
from tests.synthetic import HeapBuilder, Synthetic, every_bin_heap

CONFIGS = [((2, 36), 8), ((2, 36), 4), ((2, 27), 8), ((2, 43), 8)]
IDS = [f"{v[0]}.{v[1]}-{'x86_64' if w == 8 else 'i386'}" for v, w in CONFIGS]


def walked(heap: Heap):
    problems: List[Problem] = []
    return list(heap.chunks(heap.main_arena, problems)), problems


def consistent(s: Synthetic, heap: Heap, expected: List[int]) -> None:
    """Every consumer of the walk sees the chunks at `expected` (builder addresses, top included)."""
    arena = heap.main_arena
    chunks, _ = walked(heap)
    assert [a for a, _ in chunks] == expected
    rows = model.summarise(heap.chunk_batches(arena, []), arena.state.top, heap.free_index(arena))
    assert sum(rows.values()) == len(expected)
    assert check_arena(heap, arena).chunks == len(expected)
    H = s.layout.header_size
    for address in expected[1:]:
        assert heap.where(address + H).chunk == address  # the user pointer of every resumed chunk


def in_use_then_listed(s: Synthetic, start: int) -> int:
    """The index of the first chunk from `start` on that the builder put in a bin (or top)."""
    return next(i for i, c in enumerate(s.chunks) if i >= start and c.state != "in_use")


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_damaged_size_in_the_middle(version, word):
    _, s = every_bin_heap(version, word)
    victim = s.chunks[3]
    s.poke(victim.address + word, 0x41414141 | 1)  # runs far past top
    heap = s.heap()
    resumed = in_use_then_listed(s, 4)
    expected = [c.address for c in s.chunks[:4] + s.chunks[resumed:]]
    consistent(s, heap, expected)
    _, problems = walked(heap)
    assert len(problems) == 1 and problems[0].address == victim.address
    skipped = s.chunks[resumed].address - victim.address
    assert problems[0].message.endswith(f"the walk skips {skipped:#x} bytes and resumes at "
                                        f"{s.chunks[resumed].address:#x}, which {bin_name(s, resumed)} lists")


def bin_name(s: Synthetic, i: int) -> str:
    c = s.chunks[i]
    return "unsorted" if c.bin == "unsorted" else f"{c.bin}[{c.index}]"


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_swallowed_chunks_are_shown_as_read_not_walked(version, word):
    _, s = every_bin_heap(version, word)
    victim = s.chunks[3]
    s.poke(victim.address + word, 0x41414141 | 1)
    heap = s.heap()
    resumed = in_use_then_listed(s, 4)
    H = s.layout.header_size
    for c in s.chunks[4:resumed]:  # in use, inside the span the walk skipped
        w = heap.chunk_where(c.address + H)
        assert (w.chunk, w.size_field, w.how, w.reached) == (c.address, c.size_field, "user_pointer", False)
        assert f"inside chunk {victim.address:#x}" in w.notes[0]
    # The damaged chunk itself is walked and carries its problem.
    w = heap.chunk_where(victim.address + H)
    assert w.reached and w.chunk == victim.address and not w.size_checked and w.problems


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_bogus_size_into_the_middle_of_a_chunk(version, word):
    """A size too small: the walk lands inside the chunk's data (the builder fills it with
    'A's, a size past top), breaks there and resumes at the next listed chunk."""
    b = HeapBuilder(version, word)
    m = b.layout.minsize
    first = b.chunk(m)
    big = b.chunk(0x200)
    b.chunk(m)
    after = b.chunk(m + b.layout.malloc_alignment, "tcache")
    b.chunk(m)
    s = b.build()
    s.poke(big + word, 0x100 | 1)
    heap = s.heap()
    inside = big + 0x100
    consistent(s, heap, [s.chunks[0].address, first, big, inside, after, after + m + b.layout.malloc_alignment,
                         s.top])
    _, problems = walked(heap)
    assert [p.address for p in problems] == [inside]
    assert f"resumes at {after:#x}" in problems[0].message


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_two_damaged_spans(version, word):
    _, s = every_bin_heap(version, word)
    one = s.chunks[3]
    r1 = in_use_then_listed(s, 4)
    two_i = next(i for i in range(r1 + 2, len(s.chunks)) if s.chunks[i].state == "in_use")
    two = s.chunks[two_i]
    r2 = in_use_then_listed(s, two_i + 1)
    s.poke(one.address + word, 0)
    s.poke(two.address + word, 8 | 1)
    heap = s.heap()
    expected = [c.address for c in s.chunks[:4] + s.chunks[r1:two_i + 1] + s.chunks[r2:]]
    consistent(s, heap, expected)
    _, problems = walked(heap)
    assert [p.address for p in problems] == [one.address, two.address]
    assert all("resumes at" in p.message for p in problems)


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_damage_right_before_top(version, word):
    _, s = every_bin_heap(version, word)
    last = s.chunks[-2]
    assert last.state == "in_use"
    s.poke(last.address + word, 8 | 1)
    heap = s.heap()
    consistent(s, heap, [c.address for c in s.chunks])
    _, problems = walked(heap)
    assert len(problems) == 1 and "resumes at" in problems[0].message and "top chunk" in problems[0].message
    assert heap.where(s.top + 0x10).state == "top"


def test_a_listed_chunk_whose_neighbours_disagree_is_passed_over():
    """The first listed chunk after the damage has a broken size itself: the walk resumes at
    the next one."""
    b = HeapBuilder((2, 36), 8)
    victim = b.chunk(0x30)
    b.chunk(0x20)
    bad = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    good = b.chunk(0x50, "tcache")
    b.chunk(0x20)
    s = b.build()
    s.poke(victim + 8, 0)
    s.poke(bad + 8, 0x48 | 1)  # misaligned: not a resync point
    heap = s.heap()
    consistent(s, heap, [s.chunks[0].address, victim, good, good + 0x50, s.top])


def test_prev_inuse_clear_must_lead_back_into_the_skipped_span():
    """A listed chunk whose PREV_INUSE is clear must have a prev_size that leads back no
    further than the damaged chunk."""
    b = HeapBuilder((2, 36), 8)
    victim = b.chunk(0x30)
    b.chunk(0x20)
    small = b.chunk(0x100, "small")
    b.chunk(0x20)
    s = b.build()
    s.poke(victim + 8, 0)
    after = small + 0x100  # PREV_INUSE clear, prev_size 0x100: its neighbour is `small`
    assert s.peek(after + 8) & 1 == 0
    heap = s.heap()
    consistent(s, heap, [s.chunks[0].address, victim, small, after, s.top])
    s.poke(small + 8, 0x100)  # small's own PREV_INUSE clear, with prev_size 0: no agreement
    s.poke(small, 0x10000)
    heap = s.heap()
    chunks, _ = walked(heap)
    assert [a for a, _ in chunks] == [s.chunks[0].address, victim, s.top]


def test_a_healthy_walk_never_looks_for_resync_points():
    _, s = every_bin_heap((2, 36), 8)
    heap = s.heap()
    chunks, problems = walked(heap)
    assert problems == [] and len(chunks) == len(s.chunks)
    resync = heap.resync(heap.main_arena)
    assert not resync.asked and resync.labels == {}


def test_the_walk_without_resync_still_stops():
    """region_at and other trial walks pass no Resync: they stop at the first bad size."""
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.chunks[3].address + 8, 0)
    heap = s.heap()
    problems: List[Problem] = []
    out = list(model.walk_region(heap.reader, s.layout, heap.main_arena.heaps[0], s.top, problems))
    assert [a for a, _ in out] == [c.address for c in s.chunks[:4]]
    assert problems[0].message.endswith("the walk stops here")


def test_resumed_counts_by_state():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.chunks[3].address + 8, 0)
    heap = s.heap()
    arena = heap.main_arena
    resumed = in_use_then_listed(s, 4)
    kept = s.chunks[:4] + s.chunks[resumed:]
    rows = model.summarise(heap.chunk_batches(arena, []), arena.state.top, heap.free_index(arena))
    want = Counter((c.state, c.bin, c.size) for c in kept if c.address != s.chunks[3].address)
    want["in_use", None, 0] += 1  # the damaged chunk, by the size it now says
    assert dict(rows) == dict(want)
