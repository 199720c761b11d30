"""try_malloc's bins past the tcache and the fast bins (paths.py), against glibc 2.36's
_int_malloc by hand: sorting an unsorted chunk into a large bin (in the middle, at the end, next
to its equal, into an empty bin; the nextsize walk that loops; the (nextsize) and (bk) checks),
the large bin's smallest fit, the binmap search (a false alarm bit), the last_remainder split,
the exact fits stashed in the tcache, 2.42's large tcache bins; heap_ready, live_tcache and
common_key.

The words a path writes are compared with malloc.c's stores, written out here.  malloc_state
on x86_64 2.36: mutex, flags, have_fastchunks (ints), fastbinsY[10] at 0x10, top at 0x60,
last_remainder 0x68, bins[254] at 0x70, binmap[4] at 0x860; bin_at(i) = &bins[2(i-1)] - 0x10,
so the unsorted bin's header is main_arena + 0x60 and large bin 64's main_arena + 0x450.
Chunks: fd at +0x10, bk +0x18, fd_nextsize +0x20, bk_nextsize +0x28."""

from __future__ import annotations

from typing import Dict, Optional

from gdb_heap import paths
from gdb_heap.heap import Heap
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic, uninitialised_image

FD, BK, FDN, BKN = 0x10, 0x18, 0x20, 0x28


def malloc(s: Synthetic, n: int, written: Optional[Dict[int, int]] = None, calloc: bool = False
           ) -> paths.MallocResult:
    heap = s.heap()
    return paths.try_malloc(heap.reader, paths.context_for(heap), n, calloc, written=written)


def large_heap(victim: int) -> tuple[Synthetic, int, int, int]:
    """large bin 64 holding 0x430 and 0x410 (in that order), an unsorted chunk of `victim` bytes."""
    b = HeapBuilder((2, 36), 8)
    l1 = b.chunk(0x430, "large")
    b.chunk(0x20)
    l2 = b.chunk(0x410, "large")
    b.chunk(0x20)
    u = b.chunk(victim, "unsorted")
    b.chunk(0x20)
    return b.build(top_size_min=0x2000), l1, l2, u


# -- sorting into a large bin -------------------------------------------------------------------

def test_sorting_into_the_middle_of_a_large_bin():
    """0x420 between 0x430 and 0x410: the fd_nextsize walk stops at 0x410 (fwd), the victim goes
    before it: victim->fd_nextsize = fwd, ->bk_nextsize = fwd->bk_nextsize (0x430), and both
    neighbours' nextsize links point at it; bck = fwd->bk; then the bin list links and the
    binmap bit of bin 64 (binmap[2] bit 0).  malloc(0x1000) then finds no bin and splits top."""
    s, l1, l2, u = large_heap(0x420)
    A = s.arena
    w: Dict[int, int] = {}
    r = malloc(s, 0x1000, w)
    top = u + 0x420 + 0x20
    assert r.steps == ["malloc(0x1000): chunk size 0x1010",
                       f"unsorted chunk {u:#x} (size 0x420) sorted into large[64]",
                       f"split from top: top becomes {top + 0x1010:#x} of size {s.top_size - 0x1010:#x}"]
    assert (r.source, r.chunk, r.top_after) == ("top", top, top + 0x1010)
    assert w == {
        A + 0x70: A + 0x60, A + 0x78: A + 0x60,  # the unsorted bin empty again
        u + FD: l2, u + BK: l1, u + FDN: l2, u + BKN: l1,
        l2 + BKN: u, l1 + FDN: u, l2 + BK: u, l1 + FD: u,
        A + 0x868: 1,  # mark_bin (64)
        A + 0x60: top + 0x1010, top + 8: 0x1011, top + 0x1010 + 8: (s.top_size - 0x1010) | 1,
    }


def test_sorting_next_to_a_chunk_of_the_same_size():
    """0x430 equal to the first: "always insert in the second position" (fwd = fwd->fd), no
    nextsize link written."""
    s, l1, l2, u = large_heap(0x430)
    w: Dict[int, int] = {}
    malloc(s, 0x1000, w)
    assert (w[u + FD], w[u + BK], w[l1 + FD], w[l2 + BK]) == (l2, l1, u, u)
    assert u + FDN not in w and u + BKN not in w


def test_sorting_the_smallest_to_the_end():
    """0x400 below the last (bck->bk's size): fwd = the bin, bck = the last chunk; the victim
    joins the nextsize ring between the last size and the first."""
    s, l1, l2, u = large_heap(0x400)
    A = s.arena
    w: Dict[int, int] = {}
    malloc(s, 0x1000, w)
    b64 = A + 0x450
    assert (w[u + FD], w[u + BK], w[u + FDN], w[u + BKN]) == (b64, l2, l1, l2)
    assert (w[l1 + BKN], w[l2 + FDN], w[b64 + BK], w[l2 + FD]) == (u, u, u, u)


def test_sorting_into_an_empty_large_bin():
    b = HeapBuilder((2, 36), 8)
    u = b.chunk(0x420, "unsorted")
    b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    b64 = s.arena + 0x450
    w: Dict[int, int] = {}
    malloc(s, 0x1000, w)
    assert (w[u + FD], w[u + BK], w[u + FDN], w[u + BKN], w[b64 + FD], w[b64 + BK]) == (b64, b64, u, u, u, u)


def test_a_nextsize_walk_that_loops_gives_up():
    s, l1, l2, u = large_heap(0x420)
    s.poke(l1 + FDN, l1)  # the first size's fd_nextsize back to itself: the walk never ends
    r = malloc(s, 0x1000)
    assert r.gave_up and (r.aborts, r.crashes) == (None, None)
    assert r.steps[-1] == f"gave up: large[64]'s fd_nextsize list comes back to {l1:#x} (a list that loops)"


def test_the_large_bin_checks():
    s, l1, l2, u = large_heap(0x420)
    s.poke(l2 + BKN, l1 + 0x430)  # fwd->bk_nextsize: the in-use guard, whose fd_nextsize is not fwd
    r = malloc(s, 0x1000)
    assert (r.aborts, r.failed_check) == ("malloc(): largebin double linked list corrupted (nextsize)",
                                         "LARGEBIN_NEXTSIZE")
    s, l1, l2, u = large_heap(0x420)
    s.poke(l2 + BK, u)  # bck = fwd->bk; bck->fd != fwd
    r = malloc(s, 0x1000)
    assert (r.aborts, r.failed_check) == ("malloc(): largebin double linked list corrupted (bk)", "LARGEBIN_BK")


def test_the_end_of_a_large_bin_is_checked_from_242():
    """2.42 checks fwd->fd->bk_nextsize->fd_nextsize == fwd->fd before putting the smallest
    chunk at the end; 2.36 does not."""
    for version, expected in (((2, 36), None), ((2, 42), "malloc(): largebin double linked list corrupted (nextsize)")):
        b = HeapBuilder(version, 8)
        l1 = b.chunk(0x430, "large")
        b.chunk(0x20)
        b.chunk(0x410, "large")
        b.chunk(0x20)
        u = b.chunk(0x400, "unsorted")
        b.chunk(0x20)
        s = b.build(top_size_min=0x2000)
        s.poke(l1 + BKN, u)  # the first chunk's bk_nextsize: not the last size
        assert malloc(s, 0x1000).aborts == expected, version


# -- the large bin's smallest fit ---------------------------------------------------------------

def large_only(*sizes: int) -> tuple[Synthetic, list[int]]:
    b = HeapBuilder((2, 36), 8)
    chunks = []
    for size in sizes:
        chunks.append(b.chunk(size, "large"))
        b.chunk(0x20)
    return b.build(top_size_min=0x2000), chunks


def test_large_bin_smallest_fit_taken_whole_below_minsize():
    s, (l1, l2) = large_only(0x430, 0x410)
    r = malloc(s, 0x408)  # nb 0x410: the 0x410 chunk, nothing left
    assert (r.source, r.bin_index, r.chunk) == ("large", 64, l2)
    assert r.steps == ["malloc(0x408): chunk size 0x410",
                       f"large[64]: the smallest chunk that fits is {l2:#x} (size 0x410)",
                       f"chunk {l2:#x} of size 0x410 taken whole (remainder below MINSIZE)"]
    r = malloc(s, 0x418)  # nb 0x420: 0x410 is too small, 0x430 leaves 0x10 < MINSIZE
    assert (r.source, r.chunk) == ("large", l1)
    assert r.steps[-1] == f"chunk {l1:#x} of size 0x430 taken whole (remainder below MINSIZE)"


def test_large_bin_split_at_minsize():
    s, (l1,) = large_only(0x430)
    w: Dict[int, int] = {}
    r = malloc(s, 0x408, w)  # nb 0x410 from 0x430: a remainder of MINSIZE, to the unsorted bin
    rem = l1 + 0x410
    assert (r.source, r.chunk) == ("large", l1)
    assert r.side_effects == [f"chunk {l1:#x} of size 0x430 split: the remainder {rem:#x} of size 0x20 goes to "
                              "the unsorted bin"]
    A = s.arena
    assert (w[rem + FD], w[rem + BK], w[A + 0x70], w[A + 0x78]) == (A + 0x60, A + 0x60, rem, rem)
    assert (w[l1 + 8], w[rem + 8], w[rem + 0x20]) == (0x411, 0x21, 0x20)  # heads and the remainder's foot
    assert A + 0x68 not in w  # no last_remainder for a large request


def test_large_bin_takes_the_second_of_equal_sizes():
    s, (l1, l1b) = large_only(0x430, 0x430)
    r = malloc(s, 0x408)
    assert r.chunk == l1b  # the first of a size stays: no nextsize links to mend


def test_a_small_request_does_not_look_at_large_bins_first():
    s, (l1,) = large_only(0x430)
    r = malloc(s, 0x3e8)  # nb 0x3f0, small bin 63: the binmap finds large[64]
    assert r.steps[1] == f"binmap: large[64] is the next non-empty bin: its last chunk {l1:#x} (size 0x430)"
    assert r.side_effects == [f"chunk {l1:#x} of size 0x430 split: the remainder {l1 + 0x3f0:#x} of size 0x40 "
                              "goes to the unsorted bin as last_remainder"]


# -- the binmap search and last_remainder -------------------------------------------------------

def test_binmap_search_skips_a_false_alarm():
    """binmap bit of the empty small bin 5 set: glibc clears it and goes on to bin 9's 0x90
    chunk, splits it and makes the remainder last_remainder (a small request)."""
    b = HeapBuilder((2, 36), 8)
    c = b.chunk(0x90, "small")
    b.chunk(0x20)
    s = b.build()
    A = s.arena
    s.poke(A + 0x860, (1 << 5) | (1 << 9), 4)
    w: Dict[int, int] = {}
    r = malloc(s, 0x18, w)
    rem = c + 0x20
    assert r.steps == ["malloc(0x18): chunk size 0x20",
                       f"binmap: small[9] is the next non-empty bin: its last chunk {c:#x} (size 0x90)",
                       f"chunk {c:#x} of size 0x90 split: the remainder {rem:#x} of size 0x70 goes to the unsorted "
                       "bin as last_remainder"]
    assert (r.source, r.bin_index, r.chunk) == ("small", 9, c)
    assert (w[A + 0x68], w[rem + 8], w[c + 8], w[rem + 0x70]) == (rem, 0x71, 0x21, 0x70)


def test_the_binmap_search_ends_at_the_last_bin():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    r = malloc(s, 0x100)
    assert (r.source, r.chunk) == ("top", s.top)


def test_last_remainder_split_needs_more_than_nb_plus_minsize():
    b = HeapBuilder((2, 36), 8)
    u = b.chunk(0x100, "unsorted")
    b.chunk(0x20)
    s = b.build()
    A = s.arena
    s.poke(A + 0x68, u)  # last_remainder
    w: Dict[int, int] = {}
    r = malloc(s, 0x18, w)  # nb 0x20: 0x100 > 0x40
    rem = u + 0x20
    assert (r.source, r.chunk) == ("last_remainder", u)
    assert r.side_effects == [f"last_remainder {u:#x} split: the remainder {rem:#x} of size 0xe0 stays in the "
                              "unsorted bin as last_remainder"]
    assert (w[A + 0x70], w[A + 0x78], w[A + 0x68], w[rem + FD], w[rem + BK]) == (rem, rem, rem, A + 0x60, A + 0x60)
    assert (w[u + 8], w[rem + 8], w[rem + 0xe0]) == (0x21, 0xe1, 0xe0)
    r = malloc(s, 0xd8)  # nb 0xe0: 0x100 = nb + MINSIZE, not more: sorted into small[16], then split from there
    assert r.source == "small" and r.side_effects[0] == f"unsorted chunk {u:#x} (size 0x100) sorted into small[16]"


# -- exact fits stashed in the tcache -----------------------------------------------------------

def test_exact_fits_go_to_the_tcache_and_malloc_returns_its_first():
    """Two unsorted chunks of exactly nb with an empty tcache bin: both stashed (tcache_put), and
    malloc returns tcache[1]'s head, the last one put."""
    b = HeapBuilder((2, 36), 8)
    u1 = b.chunk(0x30, "unsorted")
    b.chunk(0x20)
    u2 = b.chunk(0x30, "unsorted")
    b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0x28, calloc=True)  # calloc skips tcache_get but _int_malloc stashes all the same
    assert r.side_effects == [f"unsorted chunk {u1:#x} fits exactly: put in tcache[1]",
                              f"unsorted chunk {u2:#x} fits exactly: put in tcache[1]"]
    assert r.steps[-1] == "the exact fits went to tcache[1]: malloc returns its first"
    assert (r.source, r.bin_index, r.chunk) == ("tcache", 1, u2)


def test_an_exact_fit_with_a_full_tcache_bin_is_returned():
    b = HeapBuilder((2, 36), 8)
    for _ in range(7):
        b.chunk(0x30, "tcache")
        b.chunk(0x20)
    u = b.chunk(0x30, "unsorted")
    b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0x28, calloc=True)
    assert (r.source, r.bin_index, r.chunk) == ("unsorted", 1, u)
    assert r.steps[-1] == f"unsorted chunk {u:#x} fits exactly"


# -- 2.42's large tcache bins --------------------------------------------------------------------

def large_tcache(sizes: tuple[int, ...], link_at: int = 0x10) -> tuple[Synthetic, list[int]]:
    """2.42: tcache bin 64 (sizes 0x420..0x7f0) holding chunks of `sizes` in list order, linked by
    hand (safe-linking: PROTECT_PTR (pos, ptr) = (pos >> 12) ^ ptr); tcache_max_bytes raised."""
    b = HeapBuilder((2, 42), 8)
    chunks = []
    for size in sizes:
        chunks.append(b.chunk(size))
        b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    L = s.layout
    s.poke(s.mp + L.malloc_par.offset("tcache_max_bytes"), 0x10000)
    assert s.tcache is not None
    s.poke(s.tcache + 0x98 + 64 * 8, chunks[0] + link_at)  # entries[64]
    for n, c in enumerate(chunks):
        e = c + 0x10
        nxt = chunks[n + 1] + 0x10 if n + 1 < len(chunks) else 0
        s.poke(e, (e >> 12) ^ nxt)
    return s, chunks


def test_a_large_tcache_bin_serves_its_exact_size():
    s, (a, c) = large_tcache((0x480, 0x500))
    r = malloc(s, 0x4f8)  # nb 0x500: past the 0x480 chunk to the 0x500 one
    assert (r.source, r.bin_index, r.chunk) == ("tcache", 64, c)
    assert r.steps[1] == "tcache[64] holds a chunk of size 0x500"
    r = malloc(s, 0x478)  # nb 0x480: the first
    assert (r.source, r.chunk) == ("tcache", a)


def test_a_large_tcache_bin_without_the_exact_size_is_passed_by():
    s, _ = large_tcache((0x480, 0x600))
    r = malloc(s, 0x4f8)  # nb 0x500: 0x600 is bigger, not equal
    assert r.source == "top"
    s, _ = large_tcache((0x480,))
    assert malloc(s, 0x4f8).source == "top"  # the list ends first


def test_a_misaligned_large_tcache_entry_aborts():
    s, (a,) = large_tcache((0x500,), link_at=0x18)
    s.poke(a + 0x10, 0x501)  # what the misaligned entry reads as its chunk's size (e - 0x10 + 8)
    r = malloc(s, 0x4f8)
    assert (r.aborts, r.failed_check) == ("malloc(): unaligned tcache chunk detected", "TCACHE_UNALIGNED")


# -- heap_ready, live_tcache, common_key ---------------------------------------------------------

def test_heap_ready():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    assert paths.heap_ready(s.heap())
    assert not paths.heap_ready(uninitialised_image().heap())  # top is initial_top
    s.poke(s.mp + s.layout.malloc_par.offset("sbrk_base"), 0)
    assert not paths.heap_ready(s.heap())
    heap = Heap(Reader(ImageMemory({}), 8), s.layout, s.anchors)  # main_arena unreadable
    assert not paths.heap_ready(heap)


def test_live_tcache_is_a_chunk_of_the_structs_size():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    reader = s.reader()
    assert s.tcache == 0x555555560010
    assert paths.live_tcache(reader, s.layout, s.tcache) == s.tcache  # its chunk: size field 0x291
    assert paths.live_tcache(reader, s.layout, None) is None
    assert paths.live_tcache(reader, s.layout, 0) is None
    assert paths.live_tcache(reader, s.layout, s.tcache + 0x290) is None  # the next chunk: 0x20
    assert paths.live_tcache(reader, s.layout, 0x10) is None  # unreadable


def test_common_key_is_the_most_frequent_word_after_the_next_pointer():
    data = bytearray(0x1000)
    for e, key in ((0x100, 7), (0x200, 7), (0x300, 9)):
        data[e + 8:e + 16] = key.to_bytes(8, "little")
    reader = Reader(ImageMemory({0x10000: data}), 8)
    L = HeapBuilder((2, 36), 8).layout
    assert paths.common_key(reader, L, [0x10100, 0x10300, 0x10200]) == 7
    assert paths.common_key(reader, L, [0x10300, 0x90000]) == 9  # an unreadable entry is skipped
    assert paths.common_key(reader, L, []) is None
    assert paths.common_key(reader, L, [0x90000]) is None
    # only the first 64 entries count: 64 of key 9 before 65 of key 7
    assert paths.common_key(reader, L, [0x10300] * 64 + [0x10100] * 65) == 9


# -- fake_chunks ---------------------------------------------------------------------------------

FAKE_BASE = 0x7FFFF7DD0000


def fake_page() -> bytes:
    """A page whose last 0x100 bytes hold candidate size words (at c + 8 for each chunk c)."""
    data = bytearray(0x1000)
    for c, word in ((0xFF0, 0x21), (0xFE0, 0x80), (0xFD0, 0x90), (0xFC0, 0x412), (0xFB0, 0x410),
                    (0xFA0, 0x420), (0xF90, 0x18), (0xF80, 0x28), (0xF70, 0x10), (0xF60, 0x100000021),
                    (0xF50, 0xB0), (0xF40, 0xC0), (0xF30, 0x25), (0xF20, 0x22), (0xEF0, 0x31), (0xEE0, 0x31)):
        data[c + 8:c + 16] = word.to_bytes(8, "little")
    return bytes(data)


def test_fake_chunks_in_a_window_with_safe_linking():
    """2.36, target the page's last 16 bytes, window 0x100: aligned places only; fast[i] when
    (size & 0xffffffff) >> 4 is i + 2 below NFASTBINS and fastbin_size (i) <= 0x80; tcache[i]
    when not IS_MMAPPED, at least MINSIZE, 16-aligned and tcache_index < 64 (0x410 is the last)."""
    reader = Reader(ImageMemory({FAKE_BASE: fake_page()}), 8)
    L = HeapBuilder((2, 36), 8).layout
    target = FAKE_BASE + 0xFF0
    got = [(f.chunk - FAKE_BASE, f.size_field, f.size, f.fits, f.distance)
           for f in paths.fake_chunks(reader, L, target, 64, 0x100)]
    assert got == [
        (0xFF0, 0x21, 0x20, ["fast[0]", "tcache[0]"], 0),
        (0xFE0, 0x80, 0x80, ["fast[6]", "tcache[6]"], 0x10),
        (0xFD0, 0x90, 0x90, ["tcache[7]"], 0x20),  # fast[7] is 0x90 > global_max_fast
        (0xFB0, 0x410, 0x410, ["tcache[63]"], 0x40),  # 0xfc0: IS_MMAPPED; 0xfa0: 0x420 is tcache bin 64
        (0xF80, 0x28, 0x28, ["fast[0]"], 0x70),  # 0xf90: 0x18 fits nothing; 0x28 is not 16-aligned
        (0xF60, 0x100000021, 0x100000020, ["fast[0]"], 0x90),  # fastbin_index reads the low 32 bits
        (0xF50, 0xB0, 0xB0, ["tcache[9]"], 0xA0),
        (0xF40, 0xC0, 0xC0, ["tcache[10]"], 0xB0),
        (0xF30, 0x25, 0x20, ["fast[0]", "tcache[0]"], 0xC0),
        (0xF20, 0x22, 0x20, ["fast[0]"], 0xD0),  # IS_MMAPPED: free would munmap it
        (0xEF0, 0x31, 0x30, ["fast[1]", "tcache[1]"], 0x100),  # the window's first byte; 0xee0 is outside
    ]
    want = [f.chunk - FAKE_BASE for f in paths.fake_chunks(reader, L, target, 64, 0x100, want=0x20)]
    assert want == [0xFF0, 0xF80, 0xF60, 0xF30, 0xF20]  # 0xf80: its fast bin's size is 0x20
    assert [f.chunk - FAKE_BASE for f in paths.fake_chunks(reader, L, target, 64, 0x100, want=0x80)] == [0xFE0]
    # seven tcache bins: 0x90 (bin 7) fits none of them, so 0xfd0 is not listed
    assert [f.fits for f in paths.fake_chunks(reader, L, target, 7, 0x20)] == [["fast[0]", "tcache[0]"],
                                                                              ["fast[6]", "tcache[6]"]]


def test_fake_chunks_without_fast_bins_and_unreadable():
    reader = Reader(ImageMemory({FAKE_BASE: fake_page()}), 8)
    L = HeapBuilder((2, 43), 8).layout  # no fast bins from 2.43
    got = [(f.chunk - FAKE_BASE, f.fits) for f in paths.fake_chunks(reader, L, FAKE_BASE + 0xFF0, 64, 0x30)]
    assert got == [(0xFF0, ["tcache[0]"]), (0xFE0, ["tcache[6]"]), (0xFD0, ["tcache[7]"])]
    assert paths.fake_chunks(reader, L, FAKE_BASE + 0x1000, 64, 0x30) == []  # its size word is past the page


# -- tcache_get and the fast bin's REMOVE_FB --------------------------------------------------------

def test_tcache_get_writes_the_next_entry_and_the_count():
    """2.36 tcache_perthread_struct: counts (uint16) at +0, entries at +0x80; e->next revealed."""
    b = HeapBuilder((2, 36), 8)
    t1 = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    t2 = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    s = b.build()
    assert s.tcache is not None
    w: Dict[int, int] = {}
    r = malloc(s, 0x38, w)
    assert (r.source, r.bin_index, r.chunk) == ("tcache", 2, t2)
    assert r.steps == ["malloc(0x38): chunk size 0x40", "tcache[2] is not empty: its first chunk"]
    assert w[s.tcache + 0x80 + 2 * 8] == t1 + 0x10
    assert w[s.tcache] == 1 << 32  # counts[2] (bytes 4-5 of the first word): 2 -> 1
    s.poke(s.tcache + 0x80 + 2 * 8, t2 + 0x18)  # a misaligned entry
    r = malloc(s, 0x38)
    assert (r.aborts, r.failed_check, r.chunk) == ("malloc(): unaligned tcache chunk detected", "TCACHE_UNALIGNED",
                                                   None)


def test_tcache_get_from_242_counts_free_slots():
    b = HeapBuilder((2, 42), 8)
    t = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    s = b.build()
    assert s.tcache is not None
    w: Dict[int, int] = {}
    r = malloc(s, 0x38, w)
    assert (r.source, r.chunk) == ("tcache", t)
    assert w[s.tcache + 0x98 + 2 * 8] == 0  # entries[2] emptied
    assert (w[s.tcache] >> 32) & 0xFFFF == 7  # num_slots[2]: 6 free slots -> 7


def page_start_fast_pair(version: tuple[int, int] = (2, 36)) -> tuple[Synthetic, int, int]:
    """Two 0x20 fast chunks, the head (freed last) at a page start: its fd is protected with its
    own page (PROTECT_PTR (&p->fd, ...)), not the page before."""
    b = HeapBuilder(version, 8)
    f1 = b.chunk(0x20, "fast")
    b.chunk(0x20)
    b.chunk(0x1000 - 0x290 - 0x40)
    f2 = b.chunk(0x20, "fast")
    b.chunk(0x20)
    s = b.build()
    assert f2 == 0x555555561000
    return s, f1, f2


def test_remove_fb_reveals_with_the_fd_fields_address():
    """An empty tcache: malloc(0x18) takes f2 and stashes f1 into tcache[0]."""
    s, f1, f2 = page_start_fast_pair()
    w: Dict[int, int] = {}
    r = malloc(s, 0x18, w)
    assert (r.source, r.chunk, r.aborts) == ("fast", f2, None)
    assert r.side_effects == ["1 more chunk of fast[0] moved to tcache[0]"]
    assert w[s.arena + 0x10] == 0  # fastbinsY[0] empty after both
    heap = s.heap()
    heap.anchors.single_thread = False  # REMOVE_FB's alignment check of the revealed fd
    r = paths.try_malloc(heap.reader, paths.context_for(heap), 0x18)
    assert (r.source, r.chunk, r.aborts) == ("fast", f2, None)


def test_contiguous_is_flags_bit_1_only():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    s.poke(a + 8, (s.heap_end - a) | 1)  # next chunk at top's end: "out" in a contiguous arena
    s.poke(s.arena + 4, 1, 4)  # flags bit 0 (FASTCHUNKS_BIT before 2.27): still contiguous
    heap = s.heap()
    r = paths.try_free(heap.reader, paths.context_for(heap), a + 0x10)
    assert r.aborts == "double free or corruption (out)"


# -- context_for, 2.26's FASTCHUNKS_BIT, tcache_unsorted_limit -----------------------------------------

def test_context_for_reads_the_key_the_arena_and_n_mmaps_max():
    from tests.synthetic import TCACHE_KEY
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x40, "tcache")
    b.chunk(0x20)
    s = b.build()
    s.poke(s.mp + s.layout.malloc_par.offset("n_mmaps_max"), 100, 4)
    heap = s.heap()
    ctx = paths.context_for(heap)
    assert (ctx.layout, ctx.main_arena, ctx.tcache, ctx.tcache_key, ctx.thread_arena, ctx.n_mmaps_max) == \
        (s.layout, s.arena, s.tcache, TCACHE_KEY, s.arena, 100)  # the key the tcache's entry carries
    assert ctx.mp.address == s.mp and ctx.single_thread and not ctx.tcache_only
    assert paths.context_for(heap, 0x1234).tcache_key == 0x1234  # libc's tcache_key, when given
    heap.anchors.thread_arena = 0
    heap.anchors.single_thread = False
    ctx = paths.context_for(heap)
    assert (ctx.thread_arena, ctx.single_thread) == (None, False)
    b = HeapBuilder((2, 33), 8)  # the key is the tcache itself before 2.34: none to find
    b.chunk(0x40, "tcache")
    b.chunk(0x20)
    assert paths.context_for(b.build().heap()).tcache_key is None


def test_fastchunks_bit_of_226():
    """2.26 keeps "no fast chunks" as flags bit 0 (FASTCHUNKS_BIT set = none): a fast free clears
    it; a large request with fast chunks consolidates, without them it does not."""
    b = HeapBuilder((2, 26), 8)
    for _ in range(7):
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    a = b.chunk(0x20)
    b.chunk(0x30)
    s = b.build(top_size_min=0x2000)
    flags_word = s.arena  # mutex (int) then flags (int): one word
    assert (s.peek(flags_word + 4, 4), s.layout.malloc_state.offset("flags")) == (1, 4)
    heap = s.heap()
    w: Dict[int, int] = {}
    r = paths.try_free(heap.reader, paths.context_for(heap), a + 0x10, w)
    assert r.to == "fast[0]" and (w[flags_word] >> 32) & 1 == 0
    assert not any(e.startswith("malloc_consolidate") for e in malloc(s, 0x1000).side_effects)
    s.poke(flags_word + 4, 0, 4)  # fast chunks (by the bit) though the bins are empty
    assert malloc(s, 0x1000).side_effects[0].startswith("malloc_consolidate")


def test_tcache_unsorted_limit_returns_the_stashed_chunk_early():
    """mp_.tcache_unsorted_limit 1: once an exact fit went to the tcache, more than one chunk
    sorted returns it (u4 is never sorted); 0 sorts them all first."""
    b = HeapBuilder((2, 36), 8)
    us = []
    for size in (0x30, 0x100, 0x110, 0x120):
        us.append(b.chunk(size, "unsorted"))
        b.chunk(0x20)
    s = b.build()
    s.poke(s.mp + s.layout.malloc_par.offset("tcache_unsorted_limit"), 1)
    r = malloc(s, 0x28)
    u1, u2, u3, u4 = us
    assert r.side_effects == [f"unsorted chunk {u1:#x} fits exactly: put in tcache[1]",
                              f"unsorted chunk {u2:#x} (size 0x100) sorted into small[16]",
                              f"unsorted chunk {u3:#x} (size 0x110) sorted into small[17]"]
    assert (r.source, r.chunk, r.bin_index) == ("tcache", u1, 1)
    s.poke(s.mp + s.layout.malloc_par.offset("tcache_unsorted_limit"), 0)
    r = malloc(s, 0x28)
    assert len(r.side_effects) == 4 and r.side_effects[-1].startswith(f"unsorted chunk {u4:#x}")
    assert (r.source, r.chunk) == ("tcache", u1)
