"""heuristics.py's choices on both sides of each of its checks, on images laid out by hand.

The rules come from malloc.c (2.36 unless named): an initialised arena's empty bins point at
bin_at(i) itself, an unused arena's top is initial_top = bin_at(1), arenas form a ring through
`next`; mp_'s static initialiser sets trim_threshold = top_pad = mmap_threshold = 128 KiB
(DEFAULT_TOP_PAD, DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD) and n_mmaps_max = 65536
(DEFAULT_MMAP_MAX), arena_test = NARENAS_FROM_NCORES (1) = 8 on 64-bit; free() keeps
trim_threshold = 2 * mmap_threshold once the threshold is dynamic.  A candidate's score counts
the checks it passed; `choose` takes one only when it leads by 2, so a check worth 1 point
decides between two candidates that differ in two such checks (test_one_default_apart_is_a_tie).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set

import pytest

from gdb_heap import heuristics, memory
from gdb_heap.errors import HeapError
from gdb_heap.layouts import GlibcLayout, layout_for
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic, every_bin_heap, noncontiguous

L36 = layout_for((2, 36), 8)
C = heuristics.Candidate
KiB = 1024


class Image:
    """A few bytearrays at chosen addresses, poked word by word."""

    def __init__(self, word: int = 8) -> None:
        self.word = word
        self.regions: Dict[int, bytearray] = {}

    def region(self, start: int, length: int) -> int:
        self.regions[start] = bytearray(length)
        return start

    def put(self, address: int, value: int, size: Optional[int] = None) -> None:
        size = size or self.word
        for start, buf in self.regions.items():
            if start <= address and address + size <= start + len(buf):
                buf[address - start:address - start + size] = value.to_bytes(size, "little")
                return
        raise ValueError(hex(address))

    def reader(self, lacks=()) -> Reader:
        return Reader(ImageMemory(dict(self.regions), lacks=lacks), self.word)


def bin_at(arena: int, i: int, L: GlibcLayout = L36) -> int:
    """malloc.c's bin_at(m, i): &m->bins[2(i-1)] - 2 * SIZE_SZ (offsetof(fd))."""
    return arena + L.malloc_state.offset("bins") + (i - 1) * 2 * L.size_sz - 2 * L.size_sz


def put_arena(img: Image, arena: int, *, empties: Optional[Set[int]] = None, other: int = 0,
              top: Optional[int] = None, nxt: Optional[int] = None, L: GlibcLayout = L36) -> None:
    """An arena whose bins in `empties` (all unless given) point at themselves and whose other
    bins hold `other`; top initial_top unless given; `next` itself unless given; attached_threads 1."""
    empties = set(range(1, 128)) if empties is None else empties
    ms, S = L.malloc_state, L.size_sz
    for i in range(1, 128):
        link = bin_at(arena, i, L) if i in empties else other
        img.put(arena + ms.offset("bins") + 2 * (i - 1) * S, link)
        img.put(arena + ms.offset("bins") + (2 * (i - 1) + 1) * S, link)
    img.put(arena + ms.offset("top"), bin_at(arena, 1, L) if top is None else top)
    img.put(arena + ms.offset("next"), arena if nxt is None else nxt)
    img.put(arena + ms.offset("attached_threads"), 1)


LIBC = 0x7FFFF7E10000
HEAP = 0x555555560000


def arena_image(**kw) -> Image:
    """One arena at LIBC + 0xC80 in 0x3000 bytes of libc data, and a 4 KiB heap page its
    non-empty bins can point into (HEAP + 0x10 is an aligned, readable chunk)."""
    img = Image()
    img.region(LIBC, 0x3000)
    img.region(HEAP, 0x1000)
    kw.setdefault("other", HEAP + 0x10)
    put_arena(img, LIBC + 0xC80, **kw)
    return img


ARENA = LIBC + 0xC80
ARENA_END = ARENA + L36.malloc_state.size  # sizeof(struct malloc_state) = 0x898 (test_layouts)


# -- valid_arena ----------------------------------------------------------------------------------

def test_valid_arena_score_counts_empty_bins_and_the_ring():
    """every_bin_heap (2.36, x86-64) fills regular bins 1 (unsorted), 16 (0x100), 32 (0x200),
    64 (0x420 and 0x430: 48 + (size >> 6)), 65 (0x440) and 99 (0x1000: 91 + (size >> 9)):
    127 - 6 = 121 empty bins, and a ring of one arena."""
    _, s = every_bin_heap((2, 36), 8)
    assert heuristics.valid_arena(s.reader(), s.layout, s.arena) == 121 + 1
    assert heuristics.valid_arena(arena_image().reader(), L36, ARENA) == 127 + 1


def test_valid_arena_rejects_each_bad_link():
    assert heuristics.valid_arena(arena_image().reader(), L36, LIBC + 0x10000) == 0  # unreadable
    inside = ARENA + 0x20
    for link, ok in ((ARENA, False), (ARENA + 0x18, False), (ARENA_END - 8, False), (ARENA_END, True),
                     (HEAP + 0x11, False), (HEAP + 0x2000, False), (HEAP + 0x18, True)):
        img = arena_image(empties=set(range(2, 128)), other=link)  # only the unsorted bin links out
        assert (heuristics.valid_arena(img.reader(), L36, ARENA) == 126 + 1) is ok, hex(link)
    # one link own, the other inside the arena: still damage
    img = arena_image()
    img.put(ARENA + L36.malloc_state.offset("bins") + 8 * 8 + 8, inside)  # bin 5's bk
    assert heuristics.valid_arena(img.reader(), L36, ARENA) == 0
    img = arena_image()
    img.put(ARENA + L36.malloc_state.offset("bins") + 8 * 8, HEAP + 0x10)  # bin 5's fd out, bk own
    assert heuristics.valid_arena(img.reader(), L36, ARENA) == 126 + 1


def test_valid_arena_needs_16_empty_bins():
    for empties, score in ((set(range(1, 9)) | set(range(120, 128)), 17), (set(range(1, 9)) | set(range(121, 128)), 0)):
        assert heuristics.valid_arena(arena_image(empties=empties).reader(), L36, ARENA) == score


def test_valid_arena_top():
    def score(top: int, *, page0: bool = False, at: int = ARENA) -> int:
        img = Image()
        img.region(LIBC, 0x3000)
        img.region(HEAP, 0x1000)
        if page0:
            img.region(0, 0x1000)
        put_arena(img, at, top=top)
        return heuristics.valid_arena(img.reader(), L36, at)

    assert score(HEAP + 0x10) == 128  # top + CHUNK_HDR_SZ aligned to 16, readable
    assert score(HEAP + 0x11) == 0 and score(HEAP + 0x18) == 0 and score(HEAP + 0x2010) == 0
    assert score(0, page0=True) == 0  # no top at all, even where page 0 is mapped
    # initial_top (bin_at(1)) is accepted as it is, aligned or not
    odd = LIBC + 0xC88
    assert (bin_at(odd, 1) + 16) % 16 == 8
    assert score(bin_at(odd, 1), at=odd) == 128


def test_valid_arena_fastbins():
    for fb, score in ((HEAP + 0x20, 128), (HEAP + 0x21, 0), (HEAP + 0x3000, 0)):
        img = arena_image()
        img.put(ARENA + L36.malloc_state.offset("fastbinsY") + 8, fb)
        assert heuristics.valid_arena(img.reader(), L36, ARENA) == score, hex(fb)


def test_valid_arena_ring():
    second, third = LIBC + 0x1800, LIBC + 0x2100  # two more arenas' next fields (0x870 in)

    def ring(*links: int, lacks=(), page0: Optional[int] = None) -> int:
        img = arena_image(nxt=links[0])
        for at, nxt in zip((second, third), links[1:]):
            img.put(at + L36.malloc_state.offset("next"), nxt)
        if page0 is not None:
            img.region(0, 0x1000)
            img.put(L36.malloc_state.offset("next"), page0)
        return heuristics.valid_arena(img.reader(lacks=lacks), L36, ARENA)

    assert ring(second, ARENA) == 127 + 2
    assert ring(second, third, ARENA) == 127 + 3
    assert ring(second, second) == 0  # a loop that misses this arena
    assert ring(second, 0) == 0 and ring(0, page0=ARENA) == 0
    assert ring(LIBC + 0x10000) == 0  # unreadable
    assert ring(LIBC + 0x10000, lacks=[(LIBC + 0x10000, LIBC + 0x11000)]) == 127 + 1  # a core lacks it
    assert ring(LIBC + 0x10004, lacks=[(LIBC + 0x10000, LIBC + 0x11000)]) == 0  # misaligned
    assert ring(LIBC + 0x2FF0) == 0  # readable, but its malloc_state runs off the data


def test_valid_arena_system_mem_at_most_its_maximum():
    for sm, score in ((0x21000, 128), (0x21001, 0)):
        img = arena_image()
        img.put(ARENA + L36.malloc_state.offset("system_mem"), sm)
        img.put(ARENA + L36.malloc_state.offset("max_system_mem"), 0x21000)
        assert heuristics.valid_arena(img.reader(), L36, ARENA) == score


def test_valid_arena_ring_longer_than_max_arenas_is_no_ring():
    """A `next` chain through MAX_ARENAS distinct readable arenas that never comes back: arena k
    of the chain at CHAIN + 8k, so its next field (0x870 in) holds arena k + 1."""
    from gdb_heap.model import MAX_ARENAS
    img = arena_image()
    chain = 0x7FFFF7000000
    img.region(chain, (8 * (MAX_ARENAS + 2) + 0x898 + 0xFFF) // 0x1000 * 0x1000)
    for k in range(MAX_ARENAS + 2):
        img.put(chain + 8 * k + 0x870, chain + 8 * (k + 1))
    img.put(ARENA + 0x870, chain)
    assert heuristics.valid_arena(img.reader(), L36, ARENA) == 0
    img.put(chain + 8 * (MAX_ARENAS - 2) + 0x870, ARENA)  # back after MAX_ARENAS - 1 others: a ring
    assert heuristics.valid_arena(img.reader(), L36, ARENA) == 127 + MAX_ARENAS


# -- arena_candidates -----------------------------------------------------------------------------

@pytest.mark.parametrize("empties", [set(range(1, 9)) | set(range(120, 128)),
                                     {1, 2} | set(range(114, 128))])
def test_an_arena_with_16_empty_bins_is_found_with_the_span_ending_at_its_last_bin(empties):
    """Each empty bin votes for the arena start it implies; 16 votes are enough, counting the
    unsorted bin's, bin 2's and the last pair of words in the span (bin 127's fd and bk)."""
    img = arena_image(empties=empties)
    end = ARENA + L36.malloc_state.offset("bins") + 254 * 8
    assert heuristics.arena_candidates(img.reader(), L36, [(LIBC, end)]) == [C(ARENA, 17)]


def test_arena_candidates_best_first_and_at_most_8():
    img = Image()
    img.region(HEAP, 0x1000)
    size = L36.malloc_state.size
    img.region(LIBC, 10 * size)
    weak, strong = LIBC, LIBC + size
    put_arena(img, weak, empties=set(range(1, 17)), other=HEAP + 0x10)
    put_arena(img, strong)
    assert heuristics.arena_candidates(img.reader(), L36, [(LIBC, LIBC + 2 * size)]) == [C(strong, 128), C(weak, 17)]
    for n in range(2, 10):
        put_arena(img, LIBC + n * size)
    found = heuristics.arena_candidates(img.reader(), L36, [(LIBC, LIBC + 10 * size)])
    assert len(found) == 8 and all(c.score == 128 for c in found)


# -- mp_ ------------------------------------------------------------------------------------------

def put_mp(s: Synthetic, mp: int, **fields: int) -> None:
    for name, value in fields.items():
        off, size, _ = s.layout.malloc_par.fields[name]
        s.poke(mp + off, value, size)


def copy_mp(s: Synthetic, at: int, **fields: int) -> int:
    size = s.layout.malloc_par.size
    s.poke_bytes(at, bytes(s.libc_bytes[s.mp - s.libc_base:s.mp - s.libc_base + size]))
    put_mp(s, at, **fields)
    return at


def mp_score(s: Synthetic, mp: Optional[int] = None) -> int:
    import gdb_heap.model as model
    reader = s.reader()
    return heuristics.valid_mp(reader, s.layout, s.mp if mp is None else mp,
                               model.read_malloc_state(reader, s.layout, s.arena))


@pytest.fixture
def s() -> Synthetic:
    return every_bin_heap((2, 36), 8)[1]


def test_valid_mp_rejects_what_mp_cannot_hold(s):
    base = mp_score(s)
    assert base > 0 and mp_score(s, 0x10000) == 0  # unreadable
    ok: List[Dict[str, int]] = [
        dict(n_mmaps=2, max_n_mmaps=2), dict(mmapped_mem=0x3000, max_mmapped_mem=0x3000),
        dict(no_dyn_threshold=1), dict(mmap_threshold=1 << 40, trim_threshold=128 * KiB),
        dict(thp_pagesize=4096), dict(thp_pagesize=2 << 20), dict(hp_pagesize=4096), dict(hp_pagesize=1 << 30),
        dict(tcache_count=0xFFFF),
    ]
    bad: List[Dict[str, int]] = [
        dict(n_mmaps=3, max_n_mmaps=2), dict(mmapped_mem=0x4000, max_mmapped_mem=0x3000),
        dict(n_mmaps_max=(1 << 24) + 1), dict(no_dyn_threshold=2), dict(arena_test=0),
        dict(mmapped_mem=0x1001, max_mmapped_mem=0x2000), dict(mmap_threshold=(1 << 40) + 1),
        dict(arena_test=(1 << 16) + 1), dict(arena_max=(1 << 16) + 1),
        dict(thp_pagesize=2048), dict(thp_pagesize=0x3000), dict(thp_pagesize=4097),
        dict(hp_pagesize=2048), dict(hp_pagesize=0x3000),
        dict(tcache_bins=1025), dict(tcache_count=0x10000),
        dict(sbrk_base=0x10000),  # the main heap's first chunk is unreadable
    ]
    for fields in ok:
        t = every_bin_heap((2, 36), 8)[1]
        put_mp(t, t.mp, **fields)
        assert mp_score(t) == base, fields
    for fields in bad:
        t = every_bin_heap((2, 36), 8)[1]
        put_mp(t, t.mp, **fields)
        assert mp_score(t) == 0, fields
    # bounds that only lose a default's point
    for fields in (dict(n_mmaps_max=1 << 24), dict(arena_test=1 << 16), dict(arena_max=1 << 16),
                   dict(tcache_bins=1024)):
        t = every_bin_heap((2, 36), 8)[1]
        put_mp(t, t.mp, **fields)
        assert mp_score(t) == base - 1, fields


def test_valid_mp_first_chunk_says_prev_inuse(s):
    base = mp_score(s)
    s.poke(s.first_chunk + 8, s.peek(s.first_chunk + 8) & ~1)
    assert mp_score(s) == 0
    # an empty heap: the first chunk is top (sysmalloc sets PREV_INUSE, but it does not count)
    b = HeapBuilder((2, 36), 8, tcache=False)
    e = b.build()
    e.poke(e.top + 8, e.peek(e.top + 8) & ~1)
    assert mp_score(e) > 0
    assert base > 0


@pytest.mark.parametrize("fields", [dict(arena_test=4), dict(arena_max=2), dict(trim_threshold=300 * KiB),
                                    dict(tcache_bins=63), dict(n_mmaps_max=65535), dict(top_pad=0)])
def test_each_default_is_one_point(s, fields):
    base = mp_score(s)
    put_mp(s, s.mp, **fields)
    assert mp_score(s) == base - 1


def test_defaults_that_keep_their_point(s):
    base = mp_score(s)
    put_mp(s, s.mp, trim_threshold=2 * 200 * KiB, mmap_threshold=200 * KiB)  # the dynamic threshold
    assert mp_score(s) == base
    i386 = every_bin_heap((2, 36), 4)[1]
    base4 = mp_score(i386)
    put_mp(i386, i386.mp, arena_test=8)  # NARENAS_FROM_NCORES(1) is 2 on 32-bit
    assert mp_score(i386) == base4 - 1


def test_the_tcache_struct_heading_the_heap_counts_only_where_glibc_puts_it_there():
    """2.42 allocates the tcache struct on the first small malloc (usually the first chunk),
    2.43 on the first free: the same first chunk says more about 2.42's mp_ than 2.43's."""
    t42, t43 = every_bin_heap((2, 42), 8)[1], every_bin_heap((2, 43), 8)[1]
    s42, s43 = mp_score(t42), mp_score(t43)
    put_mp(t42, t42.mp, arena_max=1)  # 2.43's mp_ also has thp_mode: compare each with itself
    put_mp(t43, t43.mp, arena_max=1)
    assert (s42 - mp_score(t42), s43 - mp_score(t43)) == (1, 1)
    for t, score in ((t42, s42 - 1), (t43, s43 - 1)):
        t.poke(t.first_chunk + 8, 0x101)  # some other first chunk, PREV_INUSE
        assert mp_score(t) == score - (3 if t is t42 else 0)


def test_one_default_apart_is_a_tie_two_is_a_choice(s):
    """A stale copy of mp_ in libc's data (same sbrk_base) against the real one."""
    libc = [(s.libc_base, s.libc_base + len(s.libc_bytes))]
    copy = copy_mp(s, s.libc_base + 0x2100, arena_max=3, top_pad=0)
    found = heuristics.mp_candidates(s.reader(), s.layout, libc, s.arena)
    assert [c.address for c in found] == [s.mp, copy] and found[0].score == found[1].score + 2
    assert heuristics.choose("mp_", found, "libc", "mp") == s.mp
    put_mp(s, copy, top_pad=128 * KiB)
    with pytest.raises(HeapError, match="several mp_ candidates"):
        heuristics.choose("mp_", heuristics.mp_candidates(s.reader(), s.layout, libc, s.arena), "libc", "mp")


def test_mp_candidates_sbrk_base_at_or_below_every_chunk(s):
    libc = [(s.libc_base, s.libc_base + len(s.libc_bytes))]
    # a copy whose sbrk_base is top: top is in [it, it + system_mem) but chunks lie below it
    copy_mp(s, s.libc_base + 0x2100, sbrk_base=s.top)
    assert [c.address for c in heuristics.mp_candidates(s.reader(), s.layout, libc, s.arena)] == [s.mp]


def test_mp_candidates_sbrk_base_equal_to_top_and_lowest_chunk():
    e = HeapBuilder((2, 36), 8, tcache=False).build()  # nothing allocated: top is the first chunk
    assert e.top == e.sbrk_base
    libc = [(e.libc_base, e.libc_base + len(e.libc_bytes))]
    assert [c.address for c in heuristics.mp_candidates(e.reader(), e.layout, libc, e.arena)] == [e.mp]


def test_mp_candidates_top_must_lie_inside_system_mem(s):
    libc = [(s.libc_base, s.libc_base + len(s.libc_bytes))]
    s.poke(s.arena + s.layout.malloc_state.offset("system_mem"), s.top - s.sbrk_base)  # top past the end
    assert heuristics.mp_candidates(s.reader(), s.layout, libc, s.arena) == []
    s.poke(s.arena + s.layout.malloc_state.offset("system_mem"), s.top - s.sbrk_base + 16)
    assert [c.address for c in heuristics.mp_candidates(s.reader(), s.layout, libc, s.arena)] == [s.mp]


def test_mp_candidates_static_program_with_its_data_below_the_heap():
    """A static non-PIE program: main_arena in its .data at 0x4c...., the brk heap above it.
    The arena's own empty bins are lower than any chunk and must not count as chunks."""
    b = HeapBuilder((2, 36), 8, sbrk_base=0x4E0000, libc_base=0x4C0000)
    b.chunk(0x20)
    b.chunk(0x100, "small")
    b.chunk(0x20)
    t = b.build()
    libc = [(t.libc_base, t.libc_base + len(t.libc_bytes))]
    assert [c.address for c in heuristics.mp_candidates(t.reader(), t.layout, libc, t.arena)] == [t.mp]


def test_mp_candidates_noncontiguous_main_arena(s):
    """After sysmalloc's mmap fallback top is in a mapping far from sbrk_base: NONCONTIGUOUS_BIT
    lifts the top-in-range rule, nothing else (a copy with sbrk_base below the heap is still out)."""
    t = noncontiguous(s, s.sbrk_base + 0x10000000)
    libc = [(t.libc_base, t.libc_base + len(t.libc_bytes))]
    assert [c.address for c in heuristics.mp_candidates(t.reader(), t.layout, libc, t.arena)] == [t.mp]
    # contiguous again, and a copy whose sbrk_base is a readable chunk far below the heap
    u = every_bin_heap((2, 36), 8)[1]
    low = u.sbrk_base - 0x100000
    page = bytearray(0x1000)
    page[8:16] = (0x101).to_bytes(8, "little")
    u.memory.add(low, page)
    copy_mp(u, u.libc_base + 0x2100, sbrk_base=low)
    libc = [(u.libc_base, u.libc_base + len(u.libc_bytes))]
    assert [c.address for c in heuristics.mp_candidates(u.reader(), u.layout, libc, u.arena)] == [u.mp]


@pytest.mark.parametrize("where, kept", [("after", True), ("before", True), ("overlapping", False)])
def test_mp_candidates_skip_windows_onto_main_arena(where, kept):
    """mp_candidates is given main_arena; an mp_ candidate overlapping it is a window onto the
    arena's own fields.  Arena copies placed right after, right before and over the real mp_."""
    _, s = every_bin_heap((2, 36), 8)
    ms, mps = s.layout.malloc_state.size, s.layout.malloc_par.size
    at = {"after": s.mp + mps, "before": s.mp - ms, "overlapping": s.mp + mps - 8}[where]
    raw = bytes(s.libc_bytes[s.arena - s.libc_base:s.arena - s.libc_base + ms])
    copy = bytearray()
    for k in range(0, ms, 8):  # rebase the arena's pointers to itself onto the copy
        w = int.from_bytes(raw[k:k + 8], "little")
        copy += (w + at - s.arena if s.arena <= w < s.arena + ms else w).to_bytes(8, "little")
    saved = bytes(s.libc_bytes[s.mp - s.libc_base:s.mp - s.libc_base + mps])
    s.poke_bytes(at, bytes(copy))
    s.poke_bytes(s.mp, saved)  # the overlapping copy's first word is mp_'s last: keep mp_ whole
    libc = [(s.libc_base, s.libc_base + len(s.libc_bytes))]
    found = [c.address for c in heuristics.mp_candidates(s.reader(), s.layout, libc, at)]
    assert (s.mp in found) is kept


# -- infer_state and narrow_versions --------------------------------------------------------------

def test_infer_state_keeps_the_given_mp_and_ranks_the_tcache_struct_rows_first(s):
    """With main_arena and mp_ known: 2.35 and 2.37 read this 2.36 image alike (uint16 counts,
    64 bins: a 0x290 tcache struct chunk, and mp_ with the thp fields); 2.42 reads its mp_
    too but its tcache struct would be 0x300 (76 bins), so it ranks lower."""
    found = heuristics.infer_state(s.reader(), 8, [], s.arena, s.mp)
    assert {(f.main_arena, f.mp) for f in found} == {(s.arena, s.mp)}
    top = [f.version for f in found if f.score == found[0].score]
    assert sorted(top) == [(2, 35), (2, 37)]
    assert (2, 42) in [f.version for f in found[2:]]


def test_narrow_versions_edges(s):
    reader = s.reader()
    assert heuristics.narrow_versions(reader, 8, [], s.sbrk_base) == []
    assert heuristics.narrow_versions(reader, 8, [(2, 36)], s.sbrk_base) == [(2, 36)]
    assert heuristics.narrow_versions(reader, 8, [(2, 35), (2, 42)], s.sbrk_base) == [(2, 35)]
    assert heuristics.narrow_versions(reader, 8, [(2, 35), (2, 42)], 0x10000) == [(2, 35), (2, 42)]  # unreadable
    assert heuristics.narrow_versions(reader, 8, [(2, 35), (2, 42)], 0) == [(2, 35), (2, 42)]  # no heap yet


def test_narrow_versions_ignores_sbrk_base_zero_even_where_page_zero_is_mapped():
    page = bytearray(0x1000)
    page[8:16] = (0x291).to_bytes(8, "little")  # what 2.35's tcache struct chunk's size would say
    reader = Reader(ImageMemory({0: page}), 8)
    assert heuristics.narrow_versions(reader, 8, [(2, 29), (2, 35)], 0) == [(2, 29), (2, 35)]


# -- choose ---------------------------------------------------------------------------------------

def test_choose_needs_a_lead_of_two():
    assert heuristics.choose("mp_", [C(0x2000, 7), C(0x3000, 5)], "x", "mp") == 0x2000
    with pytest.raises(HeapError, match="several"):
        heuristics.choose("mp_", [C(0x2000, 7), C(0x3000, 6)], "x", "mp")


# -- scanning -------------------------------------------------------------------------------------

def test_bounded_spans():
    M = heuristics.MAX_SCAN
    assert heuristics._bounded([(0, M)]) == [(0, M)]
    assert heuristics._bounded([(100, 100), (300, 200), (0x1000, 0x1010), (0x2000, 0x2000 + M),
                                (0x9000, 0x9100)]) == [(0x1000, 0x1010), (0x2000, 0x2000 + M - 0x10)]
    assert heuristics._bounded([(0x1000, 0x1010), (0x2000, 0x2020), (0x3000, 0x3000 + M)]) == [
        (0x1000, 0x1010), (0x2000, 0x2020), (0x3000, 0x3000 + M - 0x30)]


def test_an_empty_span_does_not_end_the_search():
    img = arena_image()
    assert heuristics.arena_candidates(img.reader(), L36, [(LIBC, LIBC), (LIBC, LIBC + 0x3000)]) == [C(ARENA, 128)]


def test_pieces_retry_spans_of_two_pages_or_more_page_by_page():
    img = Image()
    P = 0x7F0000000000
    img.region(P, 0x1000)
    for a in range(P, P + 0x1000, 8):
        img.put(a, a)
    r = img.reader()
    page = tuple(range(P, P + 0x1000, 8))
    assert list(heuristics._pieces(r, [(P, P + 0x2000)])) == [(P, page), (P + 0x1000, ())]
    assert list(heuristics._pieces(r, [(P + 0xFF8, P + 0x1008)])) == [(P + 0xFF8, ())]  # small: as it is
    assert list(heuristics._pieces(r, [(P, P + 0x10), (P + 0x20, P + 0x30)])) == [
        (P, (P, P + 8)), (P + 0x20, (P + 0x20, P + 0x28))]
    assert heuristics._words(r, (P + 1, P + 4)) == (P + 8, ())
    assert heuristics._words(r, (P + 1, P + 0x18)) == (P + 8, (P + 8, P + 0x10))


def test_chains_end_cleanly_checks_alignment_and_a_whole_word(monkeypatch):
    """With the Reader's cache full every read goes to the image as asked, so a region can end
    inside a word (a cached Reader reads whole pages)."""
    monkeypatch.setattr(memory, "CACHE_BLOCKS", 0)
    L = L36
    tcache = 0x555555560010
    img = Image()
    img.region(tcache, L.tcache_perthread.size)
    entries = tcache + L.tcache_perthread.offset("entries")
    good = 0x555555570010  # aligned, its word reveals to 0: a chain of one
    img.region(good - 0x10, 0x20)
    img.put(good, good >> 12)
    img.put(entries, good)
    assert heuristics._chains_end_cleanly(img.reader(), L, tcache)
    bad = 0x555555571008  # misaligned, readable, and its word reveals to 0 as well
    img.region(bad, 0x10)
    img.put(bad, bad >> 12)
    img.put(entries, bad)
    assert not heuristics._chains_end_cleanly(img.reader(), L, tcache)
    short = 0x555555580000  # aligned, its first byte readable, not its whole word
    img.region(short, 4)
    img.put(entries, short)
    assert not heuristics._chains_end_cleanly(img.reader(), L, tcache)


# -- pristine main_arena and mp_ ------------------------------------------------------------------

def pristine(**fields: int) -> Image:
    """main_arena as its static initialiser leaves it (next = &main_arena, attached_threads 1)."""
    img = Image()
    img.region(LIBC, 0x2000)
    ms = L36.malloc_state
    img.put(ARENA + ms.offset("next"), ARENA)
    img.put(ARENA + ms.offset("attached_threads"), 1)
    for name, value in fields.items():
        img.put(ARENA + ms.offset(name), value)
    return img


def test_pristine_arena_exactly():
    span = [(LIBC, LIBC + 0x2000)]
    assert heuristics.pristine_arena_candidates(pristine().reader(), L36, [(ARENA, LIBC + 0x2000)]) == [ARENA]
    img = pristine()
    img.put(LIBC + 0x1F00, 1)  # a stray 1 with zeros around it is not an arena
    assert heuristics.pristine_arena_candidates(img.reader(), L36, span) == [ARENA]
    for fields in (dict(attached_threads=2), dict(top=HEAP), dict(system_mem=0x21000), dict(bins=HEAP),
                   dict(fastbinsY=HEAP)):
        assert heuristics.pristine_arena_candidates(pristine(**fields).reader(), L36, span) == [], fields


def pristine_mp(**fields: int) -> Image:
    img = Image()
    img.region(LIBC, 0x2000)
    mp = LIBC + 0x1000
    defaults = dict(trim_threshold=128 * KiB, top_pad=128 * KiB, mmap_threshold=128 * KiB, arena_test=8,
                    n_mmaps_max=65536)
    for name, value in {**defaults, **fields}.items():
        off, size, _ = L36.malloc_par.fields[name]
        img.put(mp + off, value, size)
    return img


def test_pristine_mp_exactly():
    mp = LIBC + 0x1000
    assert heuristics.pristine_mp_candidates(pristine_mp().reader(), L36, [(LIBC, LIBC + 0x2000)]) == [mp]
    assert heuristics.pristine_mp_candidates(pristine_mp().reader(), L36, [(LIBC, mp + 24)]) == [mp]
    for name in ("trim_threshold", "top_pad", "mmap_threshold"):
        img = pristine_mp(**{name: 256 * KiB})
        assert heuristics.pristine_mp_candidates(img.reader(), L36, [(LIBC, LIBC + 0x2000)]) == [], name


# -- threads --------------------------------------------------------------------------------------

STACK = 0x7FFFF7000000


def tcb_image(dtv: int = 0x7FFFF7100010, self_word: Optional[int] = None) -> Image:
    img = Image()
    img.region(STACK, 0x2000)
    tcb = STACK + 0x100
    img.put(tcb, tcb)
    img.put(tcb + 8, dtv)
    img.put(tcb + 16, tcb if self_word is None else self_word)
    img.put(tcb + 0x2D0, 4242, 4)  # struct pthread's tid (x86-64 2.36: offset 0x2d0)
    return img


def test_thread_pointers_exactly():
    tcb = STACK + 0x100
    span = [(STACK, STACK + 0x2000)]
    assert heuristics.thread_pointers(tcb_image().reader(), span, [4242]) == {4242: [tcb]}
    assert heuristics.thread_pointers(tcb_image().reader(), [(STACK, tcb + 24)], [4242]) == {4242: [tcb]}
    for img in (tcb_image(dtv=0), tcb_image(dtv=0x7FFFF7100011), tcb_image(self_word=tcb + 8)):
        assert heuristics.thread_pointers(img.reader(), span, [4242]) == {}
    img = tcb_image()
    img.put(tcb + 0x7FC, 77, 4)  # the last 32-bit word of the 0x800 bytes searched
    assert 77 in heuristics._tids_near(img.reader(), tcb)


def test_tls_arena_takes_the_word_nearest_the_tcb_whatever_its_place():
    tp = STACK + 0x2000 - 0x100
    low = STACK + 0x1000
    for slot in (tp - 8, tp - 16, low):
        img = Image()
        img.region(STACK, 0x2000)
        img.put(slot, ARENA)
        assert heuristics.tls_arena(img.reader(), tp, low, [ARENA]) == (ARENA, slot), hex(slot)


def test_tls_tcache_takes_the_nearest_tcache_sized_chunk():
    want = L36.tcache_chunk_size  # 0x290 (test_layouts)
    img = Image()
    img.region(STACK, 0x2000)
    img.region(HEAP, 0x4000)
    slot = STACK + 0x1000
    chunks = [HEAP + 0x1000, HEAP + 0x2000, HEAP + 0x3000]
    for chunk in chunks:
        img.put(chunk + 8, want | 1)
    for place, chunk in zip((slot - 0x20, slot - 8, slot + 0x10), chunks):
        img.put(place, chunk + 16)
    heaps = [(HEAP, HEAP + 0x4000)]
    assert heuristics.tls_tcache(img.reader(), L36, slot, heaps) == chunks[1] + 16
    # an earlier pointer into the heap span whose chunk is unreadable does not end the search
    img.put(slot - 0x20, HEAP + 0x8000 + 16)
    img.put(slot - 8, 0)
    assert heuristics.tls_tcache(img.reader(), L36, slot, [(HEAP, HEAP + 0x10000)]) == chunks[2] + 16
    # a chunk at the heap span's end is outside it
    img.put(slot + 0x10, HEAP + 0x3000 + 16)
    assert heuristics.tls_tcache(img.reader(), L36, slot, [(HEAP, HEAP + 0x3000)]) is None


def test_banner_budget_counts_sizes_not_addresses():
    text = b"\0GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n\0"
    lib = "/nonexistent/libc.so.6"
    high = 0x7F0000000000
    data = bytearray(0x1000)
    data[0x10:0x10 + len(text)] = text
    reader = Reader(ImageMemory({high + 0x10000: data}), 8)
    maps = [Mapping(high, high + 0x1000, lib), Mapping(high + 0x10000, high + 0x11000, lib)]
    assert heuristics.banner_version(reader, maps, lib) == (2, 36)
