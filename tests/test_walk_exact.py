"""The heap walk's edges (model.walk_region_batches, resume_point, free_invalid_size_abort,
summarise) on images laid out word by word here (x86_64, glibc 2.36 unless said): each
expected chunk, message and glibc abort text written by hand from malloc.c's rules."""

from __future__ import annotations

import struct
from collections import Counter
from typing import Dict, List, Optional, Tuple

import pytest

from gdb_heap import model
from gdb_heap.free_index import FreeIndex
from gdb_heap.layouts import layout_for
from gdb_heap.model import HeapRegion, Problem, Resync
from tests.images import FlatImage

L = layout_for((2, 36), 8)
HEAP = 0x555555559000
FREE_OUT = "double free or corruption (out)"


class Image(FlatImage):
    def __init__(self, size: int = 0x2000) -> None:
        super().__init__(HEAP, size)

    def size(self, chunk: int, sizef: int, prev_size: int = 0) -> None:
        self.put(chunk, prev_size, sizef)


def walk(img: Image, region: HeapRegion, top: int, names: Optional[Dict[int, str]] = None
         ) -> Tuple[List[Tuple[int, int]], List[Tuple[int, str, Optional[str]]]]:
    problems: List[Problem] = []
    resync = Resync(lambda: dict(names)) if names is not None else None
    chunks = list(model.walk_region(img.reader(), L, region, top, problems, resync))
    return chunks, [(p.address, p.message, p.glibc_abort) for p in problems]


def heap(end: int = HEAP + 0x2000, **kw) -> HeapRegion:
    return HeapRegion(start=HEAP, end=end, first_chunk=HEAP, **kw)


# -- where a walk stops ----------------------------------------------------------------------------

def test_a_size_running_into_top():
    img = Image()
    top = HEAP + 0x200
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, 0x201)  # ends at HEAP + 0x300, past top
    img.size(top, 0x1E01)
    chunks, problems = walk(img, heap(), top)
    assert chunks == [(HEAP, 0x101), (HEAP + 0x100, 0x201)]
    b = HEAP + 0x100
    assert problems == [(b, f"chunk {b:#x} of size 0x200 runs into the top chunk at {top:#x}; the walk stops here",
                         None)]


@pytest.mark.parametrize("size, heap_info, abort", [
    (0x1F00, None, FREE_OUT),  # ends at the heap's end: free() finds its next chunk outside the heap
    (0x2000, None, FREE_OUT),
    (0x1EF0, None, None),  # ends before it (inside top)
    (0x1F00, HEAP, None),  # a thread heap: free() checks contiguous heaps only
])
def test_what_free_of_a_chunk_running_past_top_prints(size, heap_info, abort):
    img = Image()
    top = HEAP + 0x200
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, size | 1)
    img.size(top, 0x1E01)
    _, problems = walk(img, heap(heap_info=heap_info), top)
    assert [(a, p) for a, _, p in problems] == [(HEAP + 0x100, abort)]


def test_a_size_running_past_the_end_of_a_region_without_top():
    img = Image()
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, 0x1001)
    end = HEAP + 0x800
    chunks, problems = walk(img, heap(end), HEAP + 0x100000)
    assert chunks == [(HEAP, 0x101), (HEAP + 0x100, 0x1001)]
    b = HEAP + 0x100
    assert problems == [(b, f"chunk {b:#x} of size 0x1000 runs past the end of its heap ({end:#x}); the walk "
                            "stops here", FREE_OUT)]


def test_a_first_chunk_past_its_regions_end():
    # a thread heap whose heap_info.size is damaged: its end comes before its first chunk
    img = Image()
    region = HeapRegion(start=HEAP, end=HEAP + 0x10, first_chunk=HEAP + 0x20, heap_info=HEAP)
    chunks, problems = walk(img, region, HEAP + 0x100000)
    assert chunks == []
    assert problems == [(HEAP + 0x20, f"chunk {HEAP + 0x20:#x} of size 0x0 runs past the end of its heap "
                                      f"({HEAP + 0x10:#x}); the walk stops here", None)]


@pytest.mark.parametrize("sizef, abort", [
    (0x11, "free(): invalid size"),  # below MINSIZE
    (0x29, "free(): invalid size"),  # not a multiple of MALLOC_ALIGNMENT
    (0x1, "free(): invalid pointer"),  # size 0: p > -size is p > 0
])
def test_an_invalid_size_names_the_chunk_and_what_free_prints(sizef, abort):
    img = Image()
    top = HEAP + 0x1000
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, sizef)
    img.size(top, 0x1001)
    chunks, problems = walk(img, heap(), top)
    b, size = HEAP + 0x100, sizef & ~7
    assert chunks == [(HEAP, 0x101), (b, sizef)]
    assert problems == [(b, f"chunk {b:#x} has an invalid size {size:#x} (below MINSIZE 0x20 or not a multiple of "
                            "16); the walk stops here", abort)]


def test_a_huge_size_runs_past_top_rather_than_being_invalid():
    img = Image()
    top = HEAP + 0x1000
    img.size(HEAP, 0x8000000000000021)  # aligned and above MINSIZE: only its end is wrong
    img.size(top, 0x1001)
    chunks, problems = walk(img, heap(), top)
    assert chunks == [(HEAP, 0x8000000000000021)]
    assert [m for _, m, _ in problems] == [
        f"chunk {HEAP:#x} of size 0x8000000000000020 runs into the top chunk at {top:#x}; the walk stops here"]


def test_an_unreadable_chunk_stops_the_walk():
    img = Image(0x1000)
    img.size(HEAP, 0x1001)  # its next chunk is on the first page the image lacks
    chunks, problems = walk(img, heap(HEAP + 0x3000), HEAP + 0x2000)
    assert chunks == [(HEAP, 0x1001)]
    assert problems == [(HEAP + 0x1000, f"chunk {HEAP + 0x1000:#x} is not readable; the walk stops here", None)]


@pytest.mark.parametrize("fence", [0x0, 0x10])  # a fencepost: size 0, or CHUNK_HDR_SZ
def test_an_old_thread_heap_ends_quietly_at_its_fenceposts(fence):
    img = Image()
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, 0x201)
    img.size(HEAP + 0x300, fence | 1 if fence else 0)
    region = heap(HEAP + 0x2000, heap_info=HEAP, fenceposts=True)
    chunks, problems = walk(img, region, HEAP + 0x100000)
    assert (chunks, problems) == ([(HEAP, 0x101), (HEAP + 0x100, 0x201)], [])


def test_a_region_that_is_only_top_stops_at_top():
    img = Image()
    img.size(HEAP, 0x101)  # top of 0x100 in a region that goes on (its end is the mapping's)
    assert walk(img, heap(), HEAP) == ([(HEAP, 0x101)], [])


def test_top_just_past_a_regions_end_is_not_its_top():
    img = Image()
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, 0x1001)
    assert walk(img, heap(HEAP + 0x100), HEAP + 0x100) == ([(HEAP, 0x101)], [])


def test_an_unreadable_top():
    img = Image(0x1000)
    img.size(HEAP, 0x1001)
    top = HEAP + 0x1000
    chunks, problems = walk(img, heap(HEAP + 0x3000), top)
    assert chunks == [(HEAP, 0x1001)]
    assert problems == [(top, f"the top chunk at {top:#x} is not readable", None)]


# -- where a broken walk resumes -------------------------------------------------------------------

def resume(img: Image, names: Dict[int, str], broken: int = HEAP + 0x100, limit: int = HEAP + 0x1000,
           top: Optional[int] = HEAP + 0x1000) -> Optional[Tuple[int, str]]:
    return model.resume_point(img.reader(), L, broken, limit, top, Resync(lambda: names))


def resumable(img: Image, at: int, size: int = 0x101, prev_size: int = 0) -> None:
    img.size(at, size, prev_size)
    img.size(at + (size & ~7), 0x31)  # a plausible next chunk


def test_resume_at_the_first_named_chunk_whose_neighbours_agree():
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    resumable(img, HEAP + 0x400)
    assert resume(img, {HEAP + 0x400: "fast[1]"}) == (HEAP + 0x400, "which fast[1] lists")


@pytest.mark.parametrize("bad", [
    HEAP + 0x208,  # not aligned: skipped, the next one is looked at
    HEAP + 0x3000,  # not readable
])
def test_a_bad_candidate_is_passed_over_for_the_next(bad):
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    resumable(img, HEAP + 0x400)
    assert resume(img, {bad: "small[2]", HEAP + 0x400: "fast[1]"}, limit=HEAP + 0x4000) == \
        (HEAP + 0x400, "which fast[1] lists")


def test_a_candidate_whose_next_chunk_is_unreadable_is_passed_over():
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    img.size(HEAP + 0x200, 0x3001)  # its next chunk, HEAP + 0x3200, is not in the image
    resumable(img, HEAP + 0x400)
    assert resume(img, {HEAP + 0x200: "small[2]", HEAP + 0x400: "fast[1]"}, limit=HEAP + 0x4000) == \
        (HEAP + 0x400, "which fast[1] lists")


def test_a_candidate_whose_size_runs_past_the_limit_is_not_resumed_at():
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    img.size(HEAP + 0x400, 0x1001)  # ends at HEAP + 0x1400
    assert resume(img, {HEAP + 0x400: "fast[1]"}) == (HEAP + 0x1000, "the arena's top chunk")


def test_a_candidate_ending_exactly_at_the_limit_is_resumed_at():
    img = Image()
    img.size(HEAP + 0x1000, 0)  # top: readable, its size not checked
    img.size(HEAP + 0x400, 0xC01)
    assert resume(img, {HEAP + 0x400: "fast[1]"}) == (HEAP + 0x400, "which fast[1] lists")


def test_a_candidate_whose_next_chunk_is_implausible_is_not_resumed_at():
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    img.size(HEAP + 0x400, 0x101)
    img.size(HEAP + 0x500, 0x8)  # below MINSIZE
    assert resume(img, {HEAP + 0x400: "fast[1]"}) == (HEAP + 0x1000, "the arena's top chunk")


def test_the_next_chunks_size_is_read_at_its_header_not_before():
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    resumable(img, HEAP + 0x400)
    struct.pack_into("<Q", img.buf, 0x4F8, 0x1)  # the candidate's last word: its user data
    assert resume(img, {HEAP + 0x400: "fast[1]"}) == (HEAP + 0x400, "which fast[1] lists")


@pytest.mark.parametrize("prev_size, ok", [
    (0x300, True),  # leads back to `broken` exactly
    (0x200, True),
    (0x310, False),  # before `broken`
    (0x0, False),  # no chunk before
    (0x208, False),  # misaligned
    (0x201, False),  # misaligned
])
def test_a_candidate_without_prev_inuse_needs_a_prev_size_back_to_the_break(prev_size, ok):
    img = Image()
    img.size(HEAP + 0x1000, 0x1001)
    resumable(img, HEAP + 0x400, 0x100, prev_size)
    expected = (HEAP + 0x400, "which small[3] lists") if ok else (HEAP + 0x1000, "the arena's top chunk")
    assert resume(img, {HEAP + 0x400: "small[3]"}) == expected


@pytest.mark.parametrize("top, expected", [
    (HEAP + 0x100, None),  # top is where the walk broke: not after it
    (HEAP + 0x110, (HEAP + 0x110, "the arena's top chunk")),
    (HEAP + 0x2000, None),  # top's size word is not readable (its prev_size word is)
])
def test_resume_at_top_only_after_the_break_and_readable(top, expected):
    img = Image(0x2008)
    assert resume(img, {}, top=top) == expected


def test_resync_asks_for_the_names_once_and_only_when_a_walk_breaks():
    calls = []

    def names() -> Dict[int, str]:
        calls.append(1)
        return {0x300: "b", 0x100: "a", 0x200: "c"}

    r = Resync(names)
    assert r.asked is False and calls == []
    assert r.after(0x100, 0x300) == [0x200]
    assert r.after(0x0, 0x301) == [0x100, 0x200, 0x300]
    assert r.asked is True and calls == [1]
    assert r.labels == {0x300: "b", 0x100: "a", 0x200: "c"}


def test_a_resumed_walk_says_how_far_it_skipped():
    img = Image()
    top = HEAP + 0x1000
    img.size(HEAP, 0x101)
    img.size(HEAP + 0x100, 0x9)
    resumable(img, HEAP + 0x400)
    img.size(HEAP + 0x500, 0xB01)
    img.size(top, 0x1001)
    chunks, problems = walk(img, heap(), top, {HEAP + 0x400: "fast[1]"})
    assert chunks == [(HEAP, 0x101), (HEAP + 0x100, 0x9), (HEAP + 0x400, 0x101), (HEAP + 0x500, 0xB01),
                      (top, 0x1001)]
    b = HEAP + 0x100
    assert problems == [(b, f"chunk {b:#x} has an invalid size 0x8 (below MINSIZE 0x20 or not a multiple of 16); "
                            f"the walk skips 0x300 bytes and resumes at {HEAP + 0x400:#x}, which fast[1] lists",
                         "free(): invalid size")]


# -- free() of an invalid size ---------------------------------------------------------------------

L41, L42 = layout_for((2, 41), 8), layout_for((2, 42), 8)
WRAP = 1 << 64


@pytest.mark.parametrize("layout, chunk, sizef, abort", [
    # to 2.41: p > -size (unsigned) first, then size < MINSIZE or misaligned
    (L41, HEAP, 0x0, "free(): invalid pointer"),
    (L41, HEAP, 0x28, "free(): invalid size"),
    (L41, WRAP - 0x10, 0x10, "free(): invalid size"),  # p == -size: not above it
    (L41, WRAP - 0x8, 0x10, "free(): invalid pointer"),
    (L41, HEAP, 0x2A, None),  # IS_MMAPPED: munmap_chunk's checks
    # 2.42: p + (size - MINSIZE) overflows for a size below MINSIZE; a misaligned one goes to the tcache
    (L42, HEAP, 0x8, "free(): invalid size"),
    (L42, HEAP, 0x28, None),
    (L42, 0x10, 0x10, "free(): invalid size"),  # 0x10 + (0x10 - 0x20) wraps to 0 exactly
    (L42, 0xF, 0x10, None),  # one below: does not wrap
])
def test_free_invalid_size_abort(layout, chunk, sizef, abort):
    assert model.free_invalid_size_abort(layout, chunk, sizef) == abort


# -- counting a walk -------------------------------------------------------------------------------

A, B, C, D, E = (HEAP + 0x100 * k for k in range(5))
BATCHES = [([A, B], [0x101, 0x101]), ([C, D, E], [0x101, 0x201, 0x1001])]
FREE = FreeIndex.of({B: ("fast", 1), D: ("small", 4)})


@pytest.mark.parametrize("limit, rows", [
    (None, {("in_use", None, 0x100): 2, ("free", "fast", 0x100): 1, ("free", "small", 0x200): 1,
            ("top", None, 0x1000): 1}),
    (0, {}),
    (1, {("in_use", None, 0x100): 1}),
    (3, {("in_use", None, 0x100): 2, ("free", "fast", 0x100): 1}),
    (4, {("in_use", None, 0x100): 2, ("free", "fast", 0x100): 1, ("free", "small", 0x200): 1}),
])
def test_summarise_counts_the_first_limit_chunks(limit, rows):
    assert model.summarise(iter(BATCHES), E, FREE, limit) == Counter(rows)


def test_summarise_with_no_room_looks_at_no_chunk():
    assert model.summarise(iter(BATCHES), A, FreeIndex.of({A: ("fast", 1)}), 0) == Counter()


def test_summarise_counts_the_limit_across_three_batches():
    batches = [([A, B], [0x101, 0x101]), ([C, D], [0x101, 0x201]), ([E], [0x1001])]
    assert model.summarise(iter(batches), E, FREE, 4) == Counter(
        {("in_use", None, 0x100): 2, ("free", "fast", 0x100): 1, ("free", "small", 0x200): 1})


def test_summarise_passes_over_a_bin_entry_between_chunks():
    free = FreeIndex.of({A + 0x10: ("fast", 0), B: ("fast", 1), D: ("small", 4)})
    assert model.summarise(iter(BATCHES), E, free) == Counter(
        {("in_use", None, 0x100): 2, ("free", "fast", 0x100): 1, ("free", "small", 0x200): 1,
         ("top", None, 0x1000): 1})


@pytest.mark.parametrize("state, kind, index, text", [
    ("free", "tcache", 3, "free tcache[3]"), ("free", "unsorted", 1, "free unsorted"),
    ("free", None, None, "free"), ("in_use", None, 3, "in use"), ("in_use", "fast", None, "in use"),
    ("top", None, None, "top"),
])
def test_state_text(state, kind, index, text):
    assert model.state_text(state, kind, index) == text
