"""A non-contiguous main arena on synthetic memory: two regions with glibc's fencepost between
them (tests/synthetic.py's noncontiguous() writes what sysmalloc writes), on x86-64 and i386."""

from typing import List

import pytest

from gdb_heap import render
from gdb_heap.check import check_arena
from gdb_heap.errors import HeapError
from gdb_heap.model import Problem
from tests.synthetic import every_bin_heap, noncontiguous

MAPPED = {8: 0x7f0000000000, 4: 0xf7000000}


@pytest.fixture(params=[8, 4], ids=["x86_64", "i386"])
def image(request):
    _, s = every_bin_heap((2, 36), request.param)
    old_top, old_size = s.top, s.top_size
    return noncontiguous(s, MAPPED[request.param]), old_top, old_size


def test_two_regions_and_their_fencepost(image):
    s, old_top, old_size = image
    S = s.S
    heap = s.heap()
    regions = heap.main_arena.heaps
    # Hand arithmetic from sysmalloc: old_size = (old_size - 2 * CHUNK_HDR_SZ) & ~15.
    fencepost = old_top + ((old_size - 4 * S) & ~15)
    assert [(r.start, r.end, r.fencepost) for r in regions] == [
        (s.sbrk_base, s.heap_end, fencepost), (MAPPED[S], MAPPED[S] + 0x2000, None)]
    assert s.heap_end - fencepost == (4 * S if S == 8 else 4 * S + 8)  # i386: 8 bytes after the pair
    problems: List[Problem] = []
    assert list(heap.chunks(heap.main_arena, problems)) == [(c.address, c.size_field) for c in s.chunks]
    assert problems == []
    doc = render.arena_doc(heap.main_arena)["heaps"]
    assert doc == [{"start": s.sbrk_base, "end": s.heap_end, "fencepost": fencepost},
                   {"start": MAPPED[S], "end": MAPPED[S] + 0x2000}]


def test_check_and_chunk_and_top(image):
    s, old_top, _ = image
    heap = s.heap()
    report = check_arena(heap, heap.main_arena)
    assert report.problems == []
    assert report.chunks == len(s.chunks)
    new_chunk = s.chunks[-2].address
    found = heap.where(new_chunk + 2 * s.S)
    assert (found.chunk, found.how) == (new_chunk, "user_pointer")
    assert heap.where(old_top).chunk == old_top
    with pytest.raises(HeapError, match="fencepost"):
        heap.where(s.heap_end - (4 * s.S if s.S == 8 else 4 * s.S + 8))
    top = heap.top(heap.main_arena)
    assert (top.address, top.end, top.region.start) == (s.top, MAPPED[s.S] + 0x2000, MAPPED[s.S])


def test_damaged_fencepost_is_reported_not_hidden(image):
    """One fencepost size overwritten: the first region no longer ends in glibc's pair, so it is
    the old single heap again, and the walk says where it broke."""
    s, old_top, old_size = image
    fencepost = old_top + ((old_size - 4 * s.S) & ~15)
    s.poke(fencepost + s.S + 2 * s.S, 0x41)
    heap = s.heap()
    problems: List[Problem] = []
    list(heap.chunks(heap.main_arena, problems))
    assert [p.address for p in problems] == [fencepost]
    assert isinstance(problems[0], Problem)
