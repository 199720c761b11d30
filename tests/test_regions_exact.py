"""model.main_heap's search for a non-contiguous main arena's regions, on images laid out by
hand (x86_64, glibc 2.36): each region is one in-use chunk of 0x100 then what sysmalloc leaves
at its end, a fencepost pair (two chunks of CHUNK_HDR_SZ | PREV_INUSE) or top.  A region
ending in a fencepost ends there rounded up to MALLOC_ALIGNMENT: 0x100 + 2 * 0x10 = 0x120."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from gdb_heap import model
from gdb_heap.layouts import layout_for
from gdb_heap.mappings import Mapping
from gdb_heap.model import MallocPar, MallocState, Problem
from tests.images import PageImage

L = layout_for((2, 36), 8)
ARENA = 0x7FFFF7E19C80
SB = 0x555555559000  # mp_.sbrk_base: its first chunk is here (SB + 0x10 is 16-aligned)
MA, MB, MC = 0x7F0000000000, 0x7F0000010000, 0x7F0000020000  # anonymous mappings
NONCONTIGUOUS = 0x2


class Image(PageImage):
    def fenced(self, at: int) -> int:
        """A chunk of 0x100 at `at`, then the fencepost pair: the region's end."""
        self.put(at + 8, 0x101)
        self.put(at + 0x108, 0x11)
        self.put(at + 0x118, 0x11)
        return at + 0x120

    def topped(self, at: int, top_size: int) -> int:
        """A chunk of 0x100 at `at`, then top: top's address."""
        self.put(at + 8, 0x101)
        self.put(at + 0x108, top_size | 1)
        return at + 0x100


def state(top: int, system_mem: int = 0x100000, flags: int = NONCONTIGUOUS) -> MallocState:
    bins = (0,) * 254
    return MallocState(ARENA, flags, 0, (0,) * 10, top, 0, bins, (0,) * 4, ARENA, 0, 1, system_mem, system_mem)


MP = MallocPar(ARENA + 0x1000, 0x20000, 0, 0x20000, 0, 0, SB, 64, 0x408, 7)


def regions(img: Image, top: int, maps: Sequence[Mapping] = (), problems: Optional[List[Problem]] = None,
            **kw) -> List[Tuple[int, int, int, Optional[int]]]:
    found = model.main_heap(img.reader(), L, state(top, **kw), MP, lambda: list(maps), problems)
    return [(r.start, r.end, r.first_chunk, r.fencepost) for r in found]


def four_regions(img: Image) -> Dict[str, int]:
    """The sbrk heap, a grown-up region after a foreign sbrk of 0x30 bytes, two old mappings,
    top in a third."""
    img.fenced(SB)
    img.fenced(SB + 0x150)
    img.fenced(MA)
    img.fenced(MB)
    return {"top": img.topped(MC, 0xF00)}


MAPS = [Mapping(SB, SB + 0x270, "[heap]", writable=True), Mapping(MA, MA + 0x1000, writable=True),
        Mapping(MB, MB + 0x1000, writable=True), Mapping(MC, MC + 0x1000, writable=True)]
FOUR = [(SB, SB + 0x120, SB, SB + 0x100), (SB + 0x150, SB + 0x270, SB + 0x150, SB + 0x250),
        # the kernel places each new mapping below the last: MB is older than MA
        (MB, MB + 0x120, MB, MB + 0x100), (MA, MA + 0x120, MA, MA + 0x100),
        (MC, MC + 0x1000, MC, None)]


def test_regions_grown_up_mapped_and_top_oldest_first():
    img = Image()
    top = four_regions(img)["top"]
    problems: List[Problem] = []
    assert regions(img, top, MAPS, problems) == FOUR
    assert problems == []


def test_the_search_stops_after_region_probes_candidates(monkeypatch):
    # candidates: SB + 0x120, 0x130, 0x140, 0x150 (found) in the sbrk area, then one per mapping
    img = Image()
    top = four_regions(img)["top"]
    monkeypatch.setattr(model, "REGION_PROBES", 7)
    assert regions(img, top, MAPS) == FOUR
    monkeypatch.setattr(model, "REGION_PROBES", 6)
    problems: List[Problem] = []
    assert regions(img, top, MAPS, problems) == FOUR[:4]
    assert [(p.address, p.message) for p in problems] == [
        (MC, f"the search for the main arena's heap regions stopped at {MC:#x} after 6 candidates; later "
             "regions are not shown"),
        (top, f"top {top:#x} is in none of the main arena's heap regions found (see heap arenas)")]
    assert problems[1].pointers == (("top ", top),)


@pytest.mark.parametrize("skipped", [
    Mapping(MB, MB + 0x1000, readable=False),
    Mapping(MB, MB + 0x1000, writable=False),
    Mapping(MB, MB + 0x1000, "/usr/lib/libfoo.so"),
])
def test_regions_are_not_looked_for_in_mappings_glibc_cannot_have_made(skipped):
    img = Image()
    top = four_regions(img)["top"]
    maps = [MAPS[0], MAPS[1], skipped, MAPS[3]]
    assert regions(img, top, maps) == [FOUR[0], FOUR[1], FOUR[3], FOUR[4]]


def test_a_mapping_ending_at_sbrk_base_is_searched_page_by_page():
    img = Image()
    img.fenced(SB)
    below = SB - 0x2000
    top = img.topped(below + 0x1000, 0xF00)  # on the mapping's second page
    maps = [Mapping(below, SB), Mapping(SB, SB + 0x120, "[heap]")]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100),
                                       (below + 0x1000, below + 0x2000, below + 0x1000, None)]


def test_a_mapped_region_starts_at_a_page_not_a_malloc_alignment_step():
    img = Image()
    img.fenced(SB)
    img.fenced(MA + 0x10)  # not at a page start: not glibc's
    top = img.topped(MC, 0xF00)
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x1000), Mapping(MC, MC + 0x1000)]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100), (MC, MC + 0x1000, MC, None)]


def test_an_unreadable_page_is_skipped_to_the_next():
    img = Image()
    img.fenced(SB)
    top = img.topped(MA + 0x1000, 0xF00)  # MA's first page is not in the image
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x2000)]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100),
                                       (MA + 0x1000, MA + 0x2000, MA + 0x1000, None)]


@pytest.mark.parametrize("first_size", [0x10, 0x18, 0x103, 0x105, 0x109])
def test_a_candidate_first_chunk_must_look_like_glibcs(first_size):
    # PREV_INUSE alone of the flags, at least MINSIZE, a multiple of MALLOC_ALIGNMENT
    img = Image()
    img.fenced(SB)
    top = img.topped(MA, 0xF00)
    img.put(MA + 8, first_size)
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x1000)]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100)]


def test_top_as_a_regions_first_chunk_is_in_it():
    img = Image()
    img.fenced(SB)
    img.put(MA + 8, 0x1001)  # the mapping holds only top
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x1000)]
    problems: List[Problem] = []
    assert regions(img, MA, maps, problems) == [(SB, SB + 0x120, SB, SB + 0x100), (MA, MA + 0x1000, MA, None)]
    assert problems == []


def test_top_at_a_regions_end_is_not_in_it():
    img = Image()
    img.fenced(SB)
    img.put(SB + 0x128, 0x1001)
    problems: List[Problem] = []
    assert regions(img, SB + 0x120, (), problems) == [(SB, SB + 0x120, SB, SB + 0x100)]
    assert [p.address for p in problems] == [SB + 0x120]
    assert regions(img, SB + 0x120) == [(SB, SB + 0x120, SB, SB + 0x100)]  # no list given: its own


@pytest.mark.parametrize("top, flags, end", [
    (SB, NONCONTIGUOUS, SB + 0x200),  # top's end: first <= top
    (SB + 0x100, NONCONTIGUOUS, SB + 0x300),
    (SB + 0x100, 0, SB + 0x10000),  # contiguous: the program break, sbrk_base + system_mem
    (SB + 0x10000, NONCONTIGUOUS, SB + 0x10000),  # top at sbrk_base + system_mem: out of reach
])
def test_a_damaged_first_region_ends_at_tops_end_or_the_break(top, flags, end):
    img = Image()
    img.put(SB + 8, 0x100)  # no PREV_INUSE: not glibc's first chunk
    img.put(top + 8, 0x200)  # (top == SB: the same chunk)
    assert regions(img, top, (), system_mem=0x10000, flags=flags) == [(SB, end, SB, None)]


def test_the_damaged_first_region_with_top_unreadable_ends_at_the_break():
    img = Image()
    img.put(SB + 8, 0x100)
    assert regions(img, SB + 0x100000, (), system_mem=0x10000) == [(SB, SB + 0x10000, SB, None)]


# -- one region: a chain of chunks ending at a fencepost pair (model.region_at) ---------------------

def region_at(img: Image, limit: int = SB + 0x20000, top: int = MC) -> Optional[Tuple[int, Optional[int]]]:
    return model.region_at(img.reader(), L, SB, limit, top, None)


def test_a_region_ends_at_its_fencepost_rounded_up():
    img = Image()
    img.fenced(SB)
    assert region_at(img) == (SB + 0x120, SB + 0x100)
    assert region_at(img, limit=SB + 0x120) == (SB + 0x120, SB + 0x100)  # ending at the limit
    assert region_at(img, limit=SB + 0x110) is None


def test_a_region_needs_prev_inuse_on_its_first_chunk():
    img = Image()
    img.fenced(SB)
    img.put(SB + 8, 0x100)
    assert region_at(img) is None


def test_a_region_starting_with_a_fencepost_is_none():
    img = Image()
    img.put(SB + 8, 0x11)
    img.put(SB + 0x18, 0x11)
    assert region_at(img) is None


@pytest.mark.parametrize("flag", [0x2, 0x4])  # IS_MMAPPED, NON_MAIN_ARENA: not the main arena's
def test_a_region_whose_chunks_are_not_the_main_arenas_is_none(flag):
    img = Image()
    img.fenced(SB + 0x100)
    img.put(SB + 8, 0x101 | flag)
    assert region_at(img) is None


def test_a_non_main_arena_chunk_in_an_earlier_block_still_counts():
    img = Image()
    img.put(SB + 8, 0x105)  # NON_MAIN_ARENA, in the first 64 KiB block
    for k in range(1, 0x140):
        img.put(SB + 0x100 * k + 8, 0x101)  # past the block the walk reads first
    img.fenced(SB + 0x14000)
    assert region_at(img, limit=SB + 0x30000) is None


def test_a_broken_chain_is_no_region_even_ending_in_a_pair():
    img = Image()
    img.put(SB + 8, 0x101)
    img.put(SB + 0x108, 0x19)  # an invalid size: the walk breaks at SB + 0x100
    img.put(SB + 0x120, 0x11)  # a pair where that size would end
    img.put(SB + 0x130, 0x11)
    assert region_at(img) is None


def test_the_search_stops_at_max_main_regions(monkeypatch):
    img = Image()
    top = four_regions(img)["top"]
    monkeypatch.setattr(model, "MAX_MAIN_REGIONS", 2)  # beyond the first: G, then MA
    problems: List[Problem] = []
    assert regions(img, top, MAPS, problems) == [FOUR[0], FOUR[1], FOUR[3]]
    assert [p.address for p in problems] == [top]


def test_two_foreign_sbrks_in_one_page():
    img = Image()
    img.fenced(SB)
    img.fenced(SB + 0x150)  # ends at SB + 0x270
    top = img.topped(SB + 0x280, 0x100)  # top ends at SB + 0x480
    maps = [Mapping(SB, SB + 0x480, "[heap]")]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100),
                                       (SB + 0x150, SB + 0x270, SB + 0x150, SB + 0x250),
                                       (SB + 0x280, SB + 0x480, SB + 0x280, None)]


def test_a_mapping_holding_a_region_ending_at_a_page_and_one_on_the_next():
    img = Image()
    img.fenced(SB)
    img.put(MA + 8, 0xFE1)  # then the pair at MA + 0xfe0: the region ends at MA + 0x1000
    img.put(MA + 0xFE8, 0x11)
    img.put(MA + 0xFF8, 0x11)
    top = img.topped(MA + 0x1000, 0xF00)
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x2000)]
    # one mapping: its newer region is the one holding top
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100), (MA, MA + 0x1000, MA, MA + 0xFE0),
                                       (MA + 0x1000, MA + 0x2000, MA + 0x1000, None)]


@pytest.mark.parametrize("first_size", [0x20, 0x110])  # MINSIZE itself; any multiple of 16
def test_a_candidate_first_chunk_of_a_size_glibc_writes(first_size):
    img = Image()
    img.fenced(SB)
    img.put(MA + 8, first_size | 1)
    top = MA + first_size
    img.put(top + 8, (0x1000 - first_size) | 1)
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x1000)]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100), (MA, MA + 0x1000, MA, None)]


def test_a_candidate_that_is_no_region_is_passed_over():
    img = Image()
    img.fenced(SB)
    img.put(MA + 8, 0x101)  # a plausible first chunk, then nothing glibc would leave
    top = img.topped(MA + 0x1000, 0xF00)
    maps = [Mapping(SB, SB + 0x120, "[heap]"), Mapping(MA, MA + 0x2000)]
    assert regions(img, top, maps) == [(SB, SB + 0x120, SB, SB + 0x100),
                                       (MA + 0x1000, MA + 0x2000, MA + 0x1000, None)]


def test_i386_a_grown_up_region_starts_at_its_first_chunk():
    # i386: a chunk's user pointer (chunk + 8) is 16-aligned, so a region's first chunk is 8 past
    # the MALLOC_ALIGNMENT step where the foreign sbrk left the break.
    sb, ma = 0x56559000, 0xF0000000
    img = Image(word=4)
    for chunk in (sb + 8, sb + 0x158):  # a chunk of 0x100, then the pair of CHUNK_HDR_SZ (8) chunks
        img.put(chunk + 4, 0x101, 4)
        img.put(chunk + 0x104, 0x9, 4)
        img.put(chunk + 0x10C, 0x9, 4)
    img.put(ma + 8 + 4, 0x101, 4)
    top = ma + 0x108
    img.put(top + 4, 0xEF9, 4)
    state = MallocState(ARENA, NONCONTIGUOUS, 0, (0,) * 11, top, 0, (0,) * 254, (0,) * 4, ARENA, 0, 1,
                        0x100000, 0x100000)
    mp = MallocPar(ARENA + 0x1000, 0x20000, 0, 0x20000, 0, 0, sb, 64, 0x408, 7)
    maps = [Mapping(sb, sb + 0x270, "[heap]"), Mapping(ma, ma + 0x1000)]
    found = model.main_heap(img.reader(), layout_for((2, 36), 4), state, mp, lambda: maps)
    # a region ending in a pair ends there rounded up to 16: sb + 0x108 + 0x10 -> sb + 0x120
    assert [(r.start, r.end, r.first_chunk, r.fencepost) for r in found] == [
        (sb, sb + 0x120, sb + 8, sb + 0x108), (sb + 0x158, sb + 0x270, sb + 0x158, sb + 0x258),
        (ma, ma + 0x1000, ma + 8, None)]
