"""Arenas and their heaps (model.arena_ring, thread_heaps, read_arenas, contiguous_main_region,
heap_spans, confirms_single_region) on images laid out by hand (x86_64, glibc 2.36): struct
fields placed at the offsets gdb_heap.layouts gives (checked against the published numbers
in test_layouts.py), every expected value written here from malloc.c/arena.c."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest

from gdb_heap import model
from gdb_heap.errors import HeapError
from gdb_heap.free_index import FreeIndex
from gdb_heap.layouts import layout_for
from gdb_heap.model import Arena, HeapRegion, MallocPar, MallocState, Problem
from tests.images import PageImage

L = layout_for((2, 36), 8)
MAIN = 0x7FFFF7E19C80
SB = 0x555555559000
NONCONTIGUOUS = 0x2
H1, H2 = 0x7FFFF0000000, 0x7FFFE8000000  # thread heaps: HEAP_MAX_SIZE (64 MiB) aligned
HEAP_INFO = 0x30  # sizeof (heap_info) in 2.36: ar_ptr, prev, size, mprotect_size, pagesize, pad


class Image(PageImage):
    def field(self, struct_layout, base: int, name: str, value: int) -> None:
        off, size, _ = struct_layout.fields[name]
        self.put(base + off, value, size)

    def arena(self, address: int, next: int, top: int = 0, system_mem: int = 0x21000, flags: int = 0) -> None:
        self.touch(address, address + L.malloc_state.size)
        for name, value in (("next", next), ("top", top), ("system_mem", system_mem), ("flags", flags)):
            self.field(L.malloc_state, address, name, value)


# -- the arena ring ---------------------------------------------------------------------------------

A2, A3 = H1 + HEAP_INFO, H2 + HEAP_INFO


def ring(img: Image):
    states, problems = model.arena_ring(img.reader(), L, MAIN)
    return [s.address for s in states], [(p.address, p.message) for p in problems]


def test_a_ring_of_three_arenas():
    img = Image()
    img.arena(MAIN, A2)
    img.arena(A2, A3)
    img.arena(A3, MAIN)
    assert ring(img) == ([MAIN, A2, A3], [])


@pytest.mark.parametrize("bad_next", [0, A2])  # NULL, or back to an arena already seen
def test_a_ring_that_does_not_lead_back_to_main_arena(bad_next):
    img = Image()
    img.arena(MAIN, A2)
    img.arena(A2, bad_next)
    assert ring(img) == ([MAIN, A2], [
        (A2, f"arena list: next {bad_next:#x} does not lead back to main_arena; the list is cut here")])


def test_an_unreadable_arena_cuts_the_ring():
    img = Image()
    img.arena(MAIN, 0x10000000)
    assert ring(img) == ([MAIN], [(0x10000000, "arena 0x10000000 is not readable; the arena list is cut here")])


def test_the_ring_stops_at_max_arenas(monkeypatch):
    img = Image()
    img.arena(MAIN, A2)
    img.arena(A2, A3)
    img.arena(A3, MAIN)
    monkeypatch.setattr(model, "MAX_ARENAS", 2)
    assert ring(img)[0] == [MAIN, A2]


# -- a thread arena's heaps ----------------------------------------------------------------------

def thread_arena(img: Image, ar_ptr_h1: int = A2) -> MallocState:
    """A2 lives in its first heap H1 (0x30000 bytes); its second heap H2 holds top."""
    hi = L.heap_info
    top = H2 + 0x1000
    img.arena(A2, MAIN, top=top)
    img.put(top + 8, 0x30001)  # top runs past H2's heap_info.size: the newest heap ends with top
    for base, ar_ptr, prev, size in ((H2, A2, H1, 0x21000), (H1, ar_ptr_h1, 0, 0x30000)):
        img.field(hi, base, "ar_ptr", ar_ptr)
        img.field(hi, base, "prev", prev)
        img.field(hi, base, "size", size)
        img.field(hi, base, "mprotect_size", size + 0x1000)
    return model.read_malloc_state(img.reader(), L, A2)


def heaps(img: Image, state: MallocState) -> Tuple[List[Tuple[object, ...]], List[Tuple[object, ...]]]:
    problems: List[Problem] = []
    found = model.thread_heaps(img.reader(), L, state, problems)
    return ([(r.start, r.end, r.first_chunk, r.heap_info, r.fenceposts, r.info_size, r.mprotect_size)
             for r in found], [(p.address, p.message, p.pointers) for p in problems])


def test_thread_heaps_oldest_first():
    img = Image()
    state = thread_arena(img)
    # H1's first chunk follows heap_info and the malloc_state (0x898), moved up to align its user
    # pointer (_int_new_arena): H1 + 0x30 + 0x898 = H1 + 0x8c8, user pointer 0x8d8, so H1 + 0x8d0.
    assert heaps(img, state) == ([
        (H1, H1 + 0x30000, H1 + 0x8D0, H1, True, 0x30000, 0x31000),
        (H2, H2 + 0x31000, H2 + 0x30, H2, False, 0x21000, 0x22000)], [])


def test_a_heap_info_naming_another_arena_cuts_the_list():
    img = Image()
    state = thread_arena(img, ar_ptr_h1=A3)
    assert heaps(img, state) == ([(H2, H2 + 0x31000, H2 + 0x30, H2, False, 0x21000, 0x22000)], [
        (H1, f"heap_info at {H1:#x} names arena {A3:#x}, not {A2:#x}; older heaps are not shown",
         (("names arena ", A3),))])


def test_thread_heaps_stop_at_max_heaps_per_arena(monkeypatch):
    img = Image()
    state = thread_arena(img)
    monkeypatch.setattr(model, "MAX_HEAPS_PER_ARENA", 1)
    assert [r[0] for r in heaps(img, state)[0]] == [H2]


def test_read_arenas_main_and_thread_with_the_main_heaps_problems():
    img = Image()
    thread_arena(img)
    top = SB + 0x120  # after the main heap's first region: in none found
    img.arena(MAIN, A2, top=top, flags=NONCONTIGUOUS, system_mem=0x10000)
    img.put(SB + 8, 0x101)
    img.put(SB + 0x108, 0x11)  # the fencepost pair sysmalloc leaves
    img.put(SB + 0x118, 0x11)
    img.put(top + 8, 0x1001)
    mp = MallocPar(MAIN + 0x1000, 0x20000, 0, 0x20000, 0, 0, SB, 64, 0x408, 7)
    arenas = model.read_arenas(img.reader(), L, MAIN, mp)
    assert [(a.address, a.main) for a in arenas] == [(MAIN, True), (A2, False)]
    assert [(p.address, p.message) for p in arenas[0].problems] == [
        (top, f"top {top:#x} is in none of the main arena's heap regions found (see heap arenas)")]
    assert [(r.start, r.end) for r in arenas[0].heaps] == [(SB, SB + 0x120)]


def test_malloc_par_fields():
    img = Image()
    mp_at = MAIN + 0x1000
    for name, value in (("trim_threshold", 0x20000), ("top_pad", 0x21000), ("mmap_threshold", 0x22000),
                        ("n_mmaps", 3), ("mmapped_mem", 0x5000), ("sbrk_base", SB), ("tcache_bins", 64),
                        ("tcache_max_bytes", 0x408), ("tcache_count", 7)):
        img.field(L.malloc_par, mp_at, name, value)
    mp = model.read_malloc_par(img.reader(), L, mp_at)
    assert mp == MallocPar(mp_at, 0x20000, 0x21000, 0x22000, 3, 0x5000, SB, 64, 0x408, 7)


# -- the usual main heap without a walk -----------------------------------------------------------

def main_image(top: int = SB + 0x1000, top_size: int = 0x20000, first_size: int = 0x1001) -> Image:
    img = Image()
    img.put(SB + 8, first_size)
    img.put(top + 8, top_size | 1)
    return img


def main_state(top: int = SB + 0x1000, system_mem: int = 0x21000, flags: int = 0) -> MallocState:
    return MallocState(MAIN, flags, 0, (0,) * 10, top, 0, (0,) * 254, (0,) * 4, MAIN, 0, 1, system_mem, system_mem)


MP = MallocPar(MAIN + 0x1000, 0x20000, 0, 0x20000, 0, 0, SB, 64, 0x408, 7)


def contiguous(img: Image, state: MallocState, mp: MallocPar = MP) -> Optional[Tuple[int, int, int, Optional[int]]]:
    r = model.contiguous_main_region(img.reader(), L, state, mp)
    return None if r is None else (r.start, r.end, r.first_chunk, r.fencepost)


def test_the_contiguous_main_heap_ends_at_tops_end():
    # top's end exactly at sbrk_base + system_mem: as far as the heap may go
    assert contiguous(main_image(), main_state()) == (SB, SB + 0x21000, SB, None)


@pytest.mark.parametrize("img, state, why", [
    (main_image(), main_state(flags=NONCONTIGUOUS), "NONCONTIGUOUS_BIT"),
    (main_image(), main_state(top=0), "no heap yet"),
    (main_image(), main_state(system_mem=0x20FF0), "top ends past sbrk_base + system_mem"),
    (main_image(top_size=0), main_state(), "top of size 0"),
    (main_image(top=SB - 0x1000), main_state(top=SB - 0x1000), "top before the heap"),
    (main_image(first_size=0x1000), main_state(), "the first chunk without PREV_INUSE"),
    (main_image(), main_state(top=SB + 0x100000), "top not readable"),
])
def test_no_contiguous_main_heap(img, state, why):
    assert contiguous(img, state) is None, why


def test_no_contiguous_main_heap_without_sbrk_base():
    mp = MallocPar(MAIN + 0x1000, 0x20000, 0, 0x20000, 0, 0, 0, 64, 0x408, 7)
    assert contiguous(main_image(), main_state(), mp) is None


def test_top_as_the_first_chunk_is_the_whole_contiguous_heap():
    img = Image()
    img.put(SB + 8, 0x21001)
    assert contiguous(img, main_state(top=SB)) == (SB, SB + 0x21000, SB, None)


def test_an_unreadable_first_chunk_is_no_contiguous_heap():
    img = Image()
    img.put(SB + 0x10008, 0x11001)
    assert contiguous(img, main_state(top=SB + 0x10000)) is None


def arena_of(state: MallocState, main: bool = True, heaps=None) -> Arena:
    return Arena(state, main, heaps if heaps is not None else (lambda found: [HeapRegion(1, 2, 1)]))


def spans(img: Image, arena: Arena, sbrk_base: int = SB) -> List[Tuple[int, int]]:
    return model.heap_spans(img.reader(), arena, sbrk_base)


def test_heap_spans_of_the_usual_main_heap_need_no_walk():
    arena = arena_of(main_state())
    assert spans(main_image(), arena) == [(SB, SB + 0x21000)]
    assert not arena.loaded


@pytest.mark.parametrize("top, top_size, expected", [
    (SB, 0x1000, [(SB, SB + 0x1000)]),  # top at sbrk_base
    (SB + 0x1000, 0, [(1, 2)]),  # top of size 0: the regions
    (SB + 0x1000, 0x21001, [(SB, SB + 0x22000)]),  # top's size system_mem: as big as it may be
    (SB + 0x1000, 0x21011, [(1, 2)]),  # past system_mem: house of force
])
def test_heap_spans_edges(top, top_size, expected):
    img = Image()
    img.put(top + 8, top_size)
    assert spans(img, arena_of(main_state(top=top))) == expected


def test_heap_spans_of_a_noncontiguous_or_loaded_or_thread_arena_are_its_regions():
    regions = [HeapRegion(SB, SB + 0x120, SB, fencepost=SB + 0x100), HeapRegion(H1, H1 + 0x1000, H1)]
    expected = [(SB, SB + 0x120), (H1, H1 + 0x1000)]
    img = main_image()
    assert spans(img, arena_of(main_state(flags=NONCONTIGUOUS), heaps=lambda found: regions)) == expected
    assert spans(img, arena_of(main_state(), heaps=regions)) == expected  # loaded: known
    assert spans(img, arena_of(main_state(), main=False, heaps=regions)) == expected
    assert spans(img, arena_of(main_state(), heaps=lambda found: regions), sbrk_base=0) == expected


def test_arena_found_keeps_the_regions_a_walk_proved():
    calls: List[int] = []

    def regions(found: List[Problem]) -> List[HeapRegion]:
        calls.append(1)
        return []

    arena = Arena(main_state(), True, regions)
    region = HeapRegion(SB, SB + 0x21000, SB)
    arena.found([region])
    assert arena.loaded and arena.heaps == [region] and calls == []
    arena.found([])  # already known: kept
    assert arena.heaps == [region]


@pytest.mark.parametrize("last, problems, proves", [
    (([SB, SB + 0x1000], [0x1001, 0x20001]), [], True),
    (([SB, SB + 0x1000], [0x1001, 0x20001]), [Problem(SB, "x")], False),
    (None, [], False),
    (([], []), [], False),
    (([SB], [0x1001]), [], False),  # the walk ended before top
])
def test_confirms_single_region(last, problems, proves):
    assert model.confirms_single_region(last, SB + 0x1000, problems) is proves


def test_chunk_at_an_unreadable_address():
    with pytest.raises(HeapError) as e:
        model.chunk_at(Image().reader(), L, 0x10000000, SB, FreeIndex())
    assert str(e.value) == "cannot read a chunk header at 0x10000000; give an address inside a heap"
