"""The heap model (gdb_heap.model via gdb_heap.heap.Heap) on synthetic heaps built by hand."""

from __future__ import annotations

import signal
from collections import Counter
from contextlib import contextmanager
from typing import Counter as CounterT, Iterator, List, Optional, Tuple

import pytest

from gdb_heap import model
from gdb_heap.check import check_arena
from gdb_heap.errors import HeapError
from gdb_heap.free_index import FreeIndex
from gdb_heap.heap import Heap
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader
from gdb_heap.model import Problem
from tests.synthetic import (HeapBuilder, Synthetic, every_bin_heap, many_chunks_heap,
                             uninitialised_image)

CONFIGS = [((2, 36), 8), ((2, 36), 4), ((2, 27), 8), ((2, 42), 8), ((2, 26), 4), ((2, 31), 8),
           ((2, 29), 4), ((2, 42), 4), ((2, 43), 8), ((2, 35), 8)]
IDS = [f"{v[0]}.{v[1]}-{'x86_64' if w == 8 else 'i386'}" for v, w in CONFIGS]
UNMAPPED = 0x10000000  # aligned, in no region of any image


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Turn a hang into a failure (SIGALRM; the suite runs on Linux)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def walk(s: Synthetic, heap: Optional[Heap] = None):
    heap = heap or s.heap()
    problems: List[Problem] = []
    chunks = list(heap.chunks(heap.main_arena, problems))
    return heap, chunks, problems


def bins_of(s: Synthetic, heap: Optional[Heap] = None, kinds=model.BIN_KINDS):
    heap = heap or s.heap()
    return heap.bins(heap.main_arena, kinds)


def summarise_arena(heap: Heap, arena, problems: List[Problem], limit=None):
    """model.summarise over the arena's walk (batched when the Heap offers batches)."""
    return model.summarise(heap.chunk_batches(arena, problems), arena.state.top, heap.free_index(arena), limit)


def chain_tuples(chains):
    return [(c.kind, c.index, c.size, c.count, list(c.chunks)) for c in chains]


@pytest.fixture(params=CONFIGS, ids=IDS)
def built(request):
    version, word = request.param
    return every_bin_heap(version, word)


# -- a healthy heap ---------------------------------------------------------------------------------

def test_chunk_walk_matches_builder(built):
    _, s = built
    _, chunks, problems = walk(s)
    assert chunks == [(c.address, c.size_field) for c in s.chunks]
    assert problems == []
    assert chunks[0][0] == s.first_chunk
    assert (chunks[0][0] + 2 * s.S) % s.layout.malloc_alignment == 0  # user pointers aligned
    assert chunks[-1] == (s.top, s.top_size | 1)
    assert s.top + s.top_size == s.heap_end == s.sbrk_base + s.peek(
        s.arena + s.layout.malloc_state.offset("system_mem"))


def test_classification_matches_builder(built):
    _, s = built
    heap, chunks, _ = walk(s)
    free = heap.free_index(heap.main_arena)
    top = heap.main_arena.state.top
    got = [model.classify(address, top, free) for address, _ in chunks]
    assert got == [(c.state, c.bin, c.index) for c in s.chunks]
    # Every kind the layout has appears at least once.
    kinds = {c.bin for c in s.chunks if c.bin}
    expected = {"tcache", "unsorted", "small", "large"} | ({"fast"} if s.layout.features.fastbins else set())
    assert kinds == expected


def test_chunk_at_matches_builder(built):
    _, s = built
    heap = s.heap()
    free = heap.free_index(heap.main_arena)
    for rec in s.chunks:
        c = model.chunk_at(heap.reader, s.layout, rec.address, s.top, free)
        assert (c.address, c.size, c.state, c.bin, c.bin_index) == (rec.address, rec.size, rec.state, rec.bin,
                                                                     rec.index)
        assert c.user_address == rec.address + 2 * s.S
        assert c.usable_size == rec.size - s.S
        assert c.prev_inuse == bool(rec.size_field & 1)
        assert not c.is_mmapped and not c.non_main_arena


def test_prev_inuse_rules(built):
    """The builder's own rules, as glibc sets them: P clear only after a regular-bin chunk."""
    _, s = built
    for before, after in zip(s.chunks, s.chunks[1:]):
        regular = before.bin in ("unsorted", "small", "large")
        assert bool(after.size_field & 1) == (not regular)
        if regular:
            assert s.peek(after.address) == before.size


def test_bins_match_builder(built):
    _, s = built
    chains, problems = bins_of(s)
    assert problems == []
    assert chain_tuples(chains) == [(c.kind, c.index, c.size, c.count, c.chunks) for c in s.chains]
    # contract order: by kind, then index
    order = [(model.BIN_KINDS.index(c.kind), c.index) for c in chains]
    assert order == sorted(order)


@pytest.mark.parametrize("kind", model.BIN_KINDS)
def test_bins_of_one_kind(built, kind):
    _, s = built
    chains, problems = bins_of(s, kinds=(kind,))
    assert problems == []
    assert chain_tuples(chains) == [(c.kind, c.index, c.size, c.count, c.chunks) for c in s.chains if c.kind == kind]


def test_bin_details_x86_64():
    """Exact sizes and orders, worked out by hand for x86-64 2.36."""
    b, s = every_bin_heap((2, 36), 8)
    chains = {(c.kind, c.index): c for c in bins_of(s)[0]}
    t1 = chains["tcache", 1]
    assert t1.size == 0x30 and t1.count == 3
    tc = [c.address for c in s.chunks if c.bin == "tcache" and c.size == 0x30]
    assert t1.chunks == tc[::-1]  # LIFO: the last freed is first
    assert chains["tcache", 3].size == 0x50
    assert chains["fast", 1].size == 0x30 and chains["fast", 0].size == 0x20
    assert chains["unsorted", 1].size == 0x20
    assert chains["small", 16].size == 0x100 and chains["small", 32].size == 0x200
    large64 = chains["large", 64]
    sizes = [s.chunk(c).size for c in large64.chunks]
    assert sizes == sorted(sizes, reverse=True) and set(sizes) == {0x420, 0x430}
    assert large64.size == 0x400
    assert chains["large", 65].size == 0x440
    assert chains["large", 99].size == 0x1000  # 91 + (0x1000 >> 9): sizes 0x1000..0x11f0
    # fd_nextsize of the first chunk of each size skips equal sizes.
    first = large64.chunks[0]
    nxt = s.peek(first + 4 * 8)
    assert s.chunk(nxt).size < s.chunk(first).size


def test_tcache_key_and_safe_linking_in_image():
    """Sanity of the builder itself: what a 2.36 tcache chunk holds."""
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("tcache", 1)
    head = c.chunks[0]
    stored = s.peek(head + 16)
    assert stored == ((head + 16) >> 12) ^ (c.chunks[1] + 16)
    assert s.peek(c.chunks[-1] + 16) == (c.chunks[-1] + 16) >> 12
    # entries[] holds the user pointer unprotected
    t = s.layout.tcache_perthread
    assert s.tcache is not None
    assert s.peek(s.tcache + t.offset("entries") + 8) == head + 16


def test_2_42_num_slots():
    _, s = every_bin_heap((2, 42), 8)
    t = s.layout.tcache_perthread
    assert s.tcache is not None
    assert s.peek(s.tcache + t.offset("num_slots") + 2 * 1, 2) == 7 - 3
    assert s.peek(s.tcache + t.offset("num_slots") + 2 * 0, 2) == 7
    chains = {(c.kind, c.index): c for c in bins_of(s)[0]}
    assert chains["tcache", 1].count == 3
    assert ("tcache", 0) not in chains


# -- damaged bins ------------------------------------------------------------------------------------

def counts_address(s: Synthetic, index: int) -> int:
    assert s.tcache is not None
    off, size, _ = s.layout.tcache_perthread.fields[s.layout.counts_field]
    return s.tcache + off + index * size


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 27), 8), ((2, 42), 8), ((2, 36), 4)])
def test_tcache_count_mismatch_is_a_problem(version, word):
    _, s = every_bin_heap(version, word)
    size = s.layout.tcache_perthread.fields[s.layout.counts_field][1]
    # Claim 5 chunks in bin 1, which holds 3.
    s.poke(counts_address(s, 1), (7 - 5) if s.layout.features.tcache_free_slots else 5, size)
    chains, problems = bins_of(s)
    t1 = next(c for c in chains if (c.kind, c.index) == ("tcache", 1))
    assert t1.count == 5
    assert t1.chunks == s.chain("tcache", 1).chunks
    assert len(problems) == 1 and "tcache[1]" in problems[0].message


def test_tcache_count_without_entries_is_listed():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(counts_address(s, 5), 2, 2)
    chains, problems = bins_of(s)
    t5 = next(c for c in chains if (c.kind, c.index) == ("tcache", 5))
    assert t5.chunks == [] and t5.count == 2
    assert any("tcache[5]" in p.message for p in problems)


def safe(s: Synthetic, field_address: int, target: int) -> int:
    return ((field_address >> 12) ^ target) if s.layout.features.safe_linking else target


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 27), 8), ((2, 36), 4)])
def test_tcache_loop_is_cut(version, word):
    _, s = every_bin_heap(version, word)
    H = 2 * word
    c = s.chain("tcache", 1).chunks
    s.poke(c[-1] + H, safe(s, c[-1] + H, c[0] + H))  # last -> first
    with time_limit(5):
        chains, problems = bins_of(s)
    t1 = next(x for x in chains if (x.kind, x.index) == ("tcache", 1))
    assert t1.chunks == c
    assert any("loop" in p.message for p in problems)


def test_tcache_loop_problem_names_the_member_with_the_bad_link():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("tcache", 1).chunks
    s.poke(c[-1] + 16, safe(s, c[-1] + 16, c[0] + 16))
    _, problems = bins_of(s)
    loops = [p for p in problems if "loop" in p.message]
    assert [p.address for p in loops] == [c[-1]]


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 27), 8), ((2, 36), 4)])
def test_fastbin_loop_is_cut(version, word):
    _, s = every_bin_heap(version, word)
    S = word
    index = 1 if word == 8 else 4
    c = s.chain("fast", index).chunks
    s.poke(c[-1] + 2 * S, safe(s, c[-1] + 2 * S, c[0]))
    with time_limit(5):
        chains, problems = bins_of(s)
    f = next(x for x in chains if (x.kind, x.index) == ("fast", index))
    assert f.chunks == c and f.count == len(c)
    assert any("loop" in p.message for p in problems)


def test_fastbin_loop_problem_names_the_member_with_the_bad_link():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("fast", 1).chunks
    s.poke(c[-1] + 16, safe(s, c[-1] + 16, c[0]))
    _, problems = bins_of(s)
    assert [p.address for p in problems if "loop" in p.message] == [c[-1]]


@pytest.mark.parametrize("kind, index, keep", [("tcache", 1, 2), ("fast", 1, 1)])
def test_singly_linked_into_unmapped_memory_is_cut(kind, index, keep):
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain(kind, index).chunks
    s.poke(c[keep - 1] + 16, safe(s, c[keep - 1] + 16, UNMAPPED))
    chains, problems = bins_of(s)
    chain = next(x for x in chains if (x.kind, x.index) == (kind, index))
    assert chain.chunks == c[:keep]
    assert any("not readable" in p.message for p in problems)
    if kind == "tcache":
        assert any("counts 3" in p.message for p in problems)  # and the count no longer matches


def test_unmapped_link_problem_names_the_member_holding_it():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("fast", 1).chunks
    s.poke(c[0] + 16, safe(s, c[0] + 16, UNMAPPED))
    _, problems = bins_of(s)
    assert [p.address for p in problems if "not readable" in p.message] == [c[0]]


def test_regular_bin_into_unmapped_memory_is_cut():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("small", 16).chunks
    s.poke(c[1] + 16, UNMAPPED)  # fd of the second chunk
    chains, problems = bins_of(s)
    sb = next(x for x in chains if (x.kind, x.index) == ("small", 16))
    assert sb.chunks == c[:2]
    assert [p.address for p in problems] == [c[1]]  # the member whose fd is wrong


def test_regular_bin_loop_is_cut():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("large", 64).chunks
    s.poke(c[-1] + 16, c[0])  # fd of the last back to the first, never to the header
    with time_limit(5):
        chains, problems = bins_of(s)
    lb = next(x for x in chains if (x.kind, x.index) == ("large", 64))
    assert lb.chunks == c
    assert any("loop" in p.message and p.address == c[-1] for p in problems)


# glibc's messages, copied from malloc.c: the unsorted loop's check 4 (2.29+), its removal check
# (2.28 only, behind check 4 until 2.37), _int_malloc's small bin victim check, unlink_chunk.
@pytest.mark.parametrize("kind,index,version,abort", [
    ("unsorted", 1, (2, 36), "malloc(): unsorted double linked list corrupted"),
    ("unsorted", 1, (2, 29), "malloc(): unsorted double linked list corrupted"),
    ("unsorted", 1, (2, 28), "malloc(): corrupted unsorted chunks 3"),
    ("unsorted", 1, (2, 27), None),
    ("small", 16, (2, 36), "malloc(): smallbin double linked list corrupted"),
    ("small", 16, (2, 26), "malloc(): smallbin double linked list corrupted"),
    ("large", 64, (2, 36), "corrupted double-linked list"),
    ("large", 64, (2, 27), "corrupted double-linked list")])
def test_regular_bin_wrong_bk(kind, index, version, abort):
    _, s = every_bin_heap(version, 8)
    c = s.chain(kind, index).chunks
    s.poke(c[-1] + 24, c[-1])  # bk of the bin's last chunk (malloc's first victim) points at itself
    chains, problems = bins_of(s)
    got = next(x for x in chains if (x.kind, x.index) == (kind, index))
    assert got.chunks == c  # the fd walk is intact
    assert len(problems) == 1
    assert problems[0].address == c[-1]
    assert problems[0].glibc_abort == abort


def test_small_bin_chunk_stashed_with_a_wrong_bk():
    """The one before the small bin's last chunk goes to the tcache after the victim: unchecked."""
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("small", 16).chunks
    assert len(c) == 3
    s.poke(c[1] + 24, c[1])
    _, problems = bins_of(s)
    assert [(p.address, p.glibc_abort) for p in problems] == [(c[1], None)]


def test_tcache_unaligned_entry():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("tcache", 1).chunks
    s.poke(c[0] + 16, safe(s, c[0] + 16, c[1] + 16 + 8))
    chains, problems = bins_of(s)
    assert next(x for x in chains if (x.kind, x.index) == ("tcache", 1)).chunks == c[:1]
    assert any(p.glibc_abort == "malloc(): unaligned tcache chunk detected" for p in problems)


# -- damaged chunk sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 36), 4), ((2, 27), 8)])
@pytest.mark.parametrize("bad", ["zero", "eight", "unaligned", "huge", "past_end"])
def test_corrupted_size_breaks_the_walk_until_a_listed_chunk(version, word, bad):
    """The walk breaks at the damaged chunk and picks up again at the next chunk the builder
    freed into a bin (its header intact): everything after it is walked as built."""
    _, s = every_bin_heap(version, word)
    victim = s.chunks[5]
    assert victim.state in ("in_use", "free")
    value = {"zero": 0, "eight": 8, "unaligned": (victim.size + 8) | 1, "huge": 1 << (8 * word - 4),
             "past_end": (s.heap_end - victim.address + s.layout.malloc_alignment) | 1}[bad]
    s.poke(victim.address + word, value)
    resumed = next(i for i, c in enumerate(s.chunks) if i > 5 and c.state != "in_use")
    with time_limit(5):
        _, chunks, problems = walk(s)
    assert [a for a, _ in chunks] == [c.address for c in s.chunks[:6] + s.chunks[resumed:]]
    assert chunks[5] == (victim.address, value)
    assert [p.address for p in problems] == [victim.address]
    skipped = s.chunks[resumed].address - victim.address
    assert f"skips {skipped:#x} bytes and resumes at {s.chunks[resumed].address:#x}" in problems[0].message


def test_corrupted_top_size():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.top + 8, 0x123456789 | 1)
    heap, chunks, problems = walk(s)
    assert chunks[-1] == (s.top, 0x123456789 | 1)
    t = heap.top(heap.main_arena)
    assert t.size == 0x123456788 and t.end == s.top + 0x123456788  # unbounded integers


def test_wrong_bin_size_in_a_small_bin():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("small", 16).chunks
    s.poke(c[0] + 8, 0x110 | 1)
    _, problems = bins_of(s)
    assert any(p.address == c[0] and "belongs" in p.message for p in problems)


# fast[1] holds chunks of size 0x30; malloc takes its head as the victim and checks its size
# ("memory corruption (fast)", up to 2.42), then stashes the next ones into the empty tcache bin,
# which only 2.42 checks ("chunk size mismatch in fastbin").
@pytest.mark.parametrize("version,position,abort", [
    ((2, 36), 0, "malloc(): memory corruption (fast)"),
    ((2, 26), 0, "malloc(): memory corruption (fast)"),
    ((2, 42), 0, "malloc(): memory corruption (fast)"),
    ((2, 36), 1, None),
    ((2, 41), 1, None),
    ((2, 42), 1, "malloc(): chunk size mismatch in fastbin")])
def test_fastbin_chunk_of_the_wrong_size(version, position, abort):
    _, s = every_bin_heap(version, 8)
    c = s.chain("fast", 1).chunks
    s.poke(c[position] + 8, 0x40 | 1)
    _, problems = bins_of(s)
    assert [p.address for p in problems] == [c[position]]
    assert problems[0].glibc_abort == abort


# -- arenas, top, initialisation -----------------------------------------------------------------------

@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 36), 4), ((2, 42), 8), ((2, 27), 8)])
def test_uninitialised_heap_has_no_heaps(version, word):
    s = uninitialised_image(version, word)
    heap = s.heap()
    assert len(heap.arenas) == 1
    arena = heap.main_arena
    assert arena.main and arena.heaps == [] and arena.problems == []
    assert not heap.initialised
    problems: List[Problem] = []
    assert list(heap.chunks(arena, problems)) == [] and problems == []
    assert heap.bins(arena) == ([], [])
    with pytest.raises(HeapError):
        heap.top(arena)
    with pytest.raises(HeapError):
        heap.where(0x555555560010)


def test_sbrk_base_zero_gives_no_heaps():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.mp + s.layout.malloc_par.offset("sbrk_base"), 0)
    heap = s.heap()
    assert heap.main_arena.heaps == [] and not heap.initialised


@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_arenas_and_top(version, word):
    _, s = every_bin_heap(version, word)
    heap = s.heap()
    (arena,) = heap.arenas
    assert arena.main and arena.address == s.arena and arena.problems == []
    assert arena.state.next == s.arena and arena.state.system_mem == s.heap_end - s.sbrk_base
    assert [(h.start, h.end, h.first_chunk) for h in arena.heaps] == [(s.sbrk_base, s.heap_end, s.first_chunk)]
    assert heap.initialised
    assert heap.arena() is arena and heap.arena(s.arena) is arena
    with pytest.raises(HeapError):
        heap.arena(s.arena + 8)
    t = heap.top(arena)
    assert (t.arena, t.address, t.size, t.end) == (s.arena, s.top, s.top_size, s.heap_end)
    assert t.region is arena.heaps[0]
    mp = heap.mp
    assert mp.sbrk_base == s.sbrk_base and mp.tcache_count == s.layout.features.tcache_fill


def test_i386_first_chunk_is_sbrk_base_plus_8():
    _, s = every_bin_heap((2, 36), 4)
    assert s.first_chunk == s.sbrk_base + 8
    assert s.heap().main_arena.heaps[0].first_chunk == s.sbrk_base + 8


def test_unreadable_libc_is_a_heap_error():
    _, s = every_bin_heap((2, 36), 8)
    mem = ImageMemory({s.sbrk_base: s.heap_bytes})
    heap = Heap(Reader(mem, 8), s.layout, s.anchors)
    with pytest.raises(HeapError):
        heap.arenas  # noqa: B018


def test_arena_ring_that_does_not_return():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.arena + s.layout.malloc_state.offset("next"), UNMAPPED)
    heap = s.heap()
    assert len(heap.arenas) == 1
    assert heap.arenas[-1].problems


def test_misaligned_sbrk_base_does_not_hang():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.mp + s.layout.malloc_par.offset("sbrk_base"), s.sbrk_base + 3)
    heap = s.heap()
    with time_limit(0.5):
        arenas = heap.arenas
    assert arenas


# -- where -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 36), 4), ((2, 27), 8)])
def test_where_finds_chunks_by_start_and_user_pointer(version, word):
    _, s = every_bin_heap(version, word)
    heap = s.heap()
    H = 2 * word
    for n, rec in enumerate(s.chunks):
        found = heap.where(rec.address)
        assert (found.chunk, found.how, found.offset, found.user_offset) == (rec.address, "chunk", 0, -H)
        assert found.arena is heap.main_arena
        assert found.prev == (s.chunks[n - 1].address if n else None)
        assert (found.state, found.bin, found.bin_index) == (rec.state, rec.bin, rec.index)
        found = heap.where(rec.address + H)
        assert (found.chunk, found.how, found.offset, found.user_offset) == (rec.address, "user_pointer", H, 0)
    for outside in (0x1000, s.heap_end + 0x10000, s.arena, UNMAPPED):
        with pytest.raises(HeapError, match="not in any heap"):
            heap.where(outside)


def test_where_inside_a_chunk_and_top():
    """Addresses inside chunks: the chunk holding them, their offsets by hand."""
    b = HeapBuilder((2, 36), 8)
    used = b.chunk(0x30)
    freed = b.chunk(0x40, "tcache")
    s = b.build()
    heap = s.heap()
    w = heap.where(used + 0x10 + 5)  # 5 bytes into the user data
    assert (w.chunk, w.how, w.offset, w.user_offset, w.state) == (used, "inside", 0x15, 5, "in_use")
    w = heap.where(used + 0x2F)  # the chunk's last byte
    assert (w.chunk, w.offset, w.user_offset) == (used, 0x2F, 0x1F)
    w = heap.where(used + 8)  # the size field: inside the header, before the user pointer
    assert (w.chunk, w.how, w.user_offset) == (used, "inside", -8)
    w = heap.where(freed + 0x18)
    assert (w.chunk, w.state, w.bin, w.bin_index, w.user_offset, w.prev) == (freed, "free", "tcache", 2, 8, used)
    w = heap.where(s.top + 0x100)
    assert (w.chunk, w.state, w.offset, w.prev) == (s.top, "top", 0x100, freed)


def test_where_top_listed_by_a_bin_is_top():
    """glibc's view: top is top; a bin listing it is a problem heap check reports."""
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x30)
    s = b.build()
    tcache_struct = s.chunks[0].address + 0x10
    entries = tcache_struct + s.layout.tcache_perthread.offset("entries")
    s.poke(entries, s.top + 0x10)  # tcache[0] (size 0x20) now lists top
    counts = s.layout.tcache_perthread.fields[s.layout.counts_field][0]
    s.poke(tcache_struct + counts, 1, 2)
    heap = s.heap()
    assert heap.where(s.top).state == "top"
    assert heap.free_index(heap.main_arena)[s.top] == ("tcache", 0)
    report = check_arena(heap, heap.main_arena)
    assert any(p.address == s.top and "top chunk" in p.message and "tcache[0]" in p.message
               for p in report.problems), report.problems


def mmapped_image(lead: int = 0):
    """every_bin_heap plus one mmapped chunk of 0x22000 bytes in a mapping of its own, `lead`
    bytes into it (memalign's slack), and the mapping list naming it."""
    _, s = every_bin_heap((2, 36), 8)
    base = 0x7FFFF7000000
    length = 0x22000
    region = bytearray(length)
    region[8:16] = (length | 2).to_bytes(8, "little")  # mmap's header (memalign leaves it behind)
    region[lead:lead + 16] = lead.to_bytes(8, "little") + ((length - lead) | 2).to_bytes(8, "little")
    s.memory.add(base, region)
    s.anchors.mappings = lambda: ([Mapping(base, base + length)], "synthetic")
    return s, base + lead, length - lead


def test_where_mmapped_chunk():
    s, chunk, size = mmapped_image()
    heap = s.heap()
    w = heap.where(chunk + 16)
    assert (w.chunk, w.how, w.arena, w.state) == (chunk, "user_pointer", None, "mmapped")
    w = heap.where(chunk + 0x1234)  # inside: found by the scan of the mappings
    assert (w.chunk, w.how, w.offset, w.user_offset, w.state) == (chunk, "inside", 0x1234, 0x1224, "mmapped")
    w = heap.where(chunk + size - 1)
    assert (w.chunk, w.offset) == (chunk, size - 1)
    c = model.chunk_at(heap.reader, s.layout, chunk, -1, FreeIndex())
    assert c.is_mmapped and c.usable_size == size - 16


def test_where_inside_a_memaligned_mmapped_chunk():
    s, chunk, size = mmapped_image(lead=0x1000 - 16)
    heap = s.heap()
    w = heap.where(chunk + 0x100)
    assert (w.chunk, w.offset, w.state) == (chunk, 0x100, "mmapped")
    with pytest.raises(HeapError, match="not in any heap"):  # the slack before the chunk is no chunk
        heap.where(chunk - 0x100)


# -- summarise ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version,word", CONFIGS, ids=IDS)
def test_summarise(version, word):
    _, s = every_bin_heap(version, word)
    heap = s.heap()
    arena = heap.main_arena
    problems: List[Problem] = []
    rows = summarise_arena(heap, arena, problems)
    expected = Counter((c.state, c.bin, c.size) for c in s.chunks)
    assert dict(rows) == dict(expected)
    assert sum(rows.values()) == len(s.chunks)
    assert sum(size * n for (_, _, size), n in rows.items()) == s.heap_end - s.first_chunk
    by_state: CounterT[str] = Counter()
    for (state, _, _), n in rows.items():
        by_state[state] += n
    assert by_state["top"] == 1
    assert by_state["free"] == len(s.free_chunks())


def test_summarise_limit():
    _, s = every_bin_heap((2, 36), 8)
    heap = s.heap()
    arena = heap.main_arena
    rows = summarise_arena(heap, arena, [], limit=5)
    assert sum(rows.values()) == 5
    assert dict(rows) == dict(Counter((c.state, c.bin, c.size) for c in s.chunks[:5]))


# -- reading in blocks ---------------------------------------------------------------------------------

def test_reader_caching_on_a_big_heap():
    s = many_chunks_heap(10000)
    heap = s.heap()
    arena = heap.main_arena
    problems: List[Problem] = []
    free = heap.free_index(arena)
    n = 0
    for address, _ in heap.chunks(arena, problems):
        model.classify(address, arena.state.top, free)
        n += 1
    assert n == 10000 + 2 and problems == []
    assert s.memory.reads < 100  # 10,000 chunks, a few dozen block reads
    assert free and sum(1 for v in free.values() if v[0] == "small") == 1000
    before = s.memory.reads
    list(heap.chunks(arena, []))  # a second walk reads from the cache
    assert s.memory.reads == before


def test_many_chunks_heap_i386():
    s = many_chunks_heap(3000, (2, 36), 4)
    heap = s.heap()
    _, chunks, problems = walk(s, heap)
    assert len(chunks) == 3002 and problems == []
    assert s.memory.reads < 60


def test_builder_rejects_impossible_heaps():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x100, "small")
    with pytest.raises(ValueError):
        b.chunk(0x100, "small")  # would have been consolidated
    with pytest.raises(ValueError):
        b.build()  # a regular-bin chunk next to top
    with pytest.raises(ValueError):
        HeapBuilder((2, 43), 8).chunk(0x20, "fast")
    with pytest.raises(ValueError):
        HeapBuilder((2, 36), 8).chunk(0x28)


def test_summarise_agrees_with_classify_when_top_is_in_a_bin():
    _, s = every_bin_heap((2, 36), 8)
    c = s.chain("tcache", 1).chunks
    s.poke(c[-1] + 16, safe(s, c[-1] + 16, s.top + 16))  # the tcache chain runs into top
    heap = s.heap()
    arena = heap.main_arena
    free = heap.free_index(arena)
    by_classify: CounterT[Tuple[str, Optional[str], int]] = Counter()
    for address, sizef in heap.chunks(arena, []):
        state, kind, _ = model.classify(address, arena.state.top, free)
        by_classify[state, kind, sizef & ~7] += 1
    assert dict(summarise_arena(heap, arena, [])) == dict(by_classify)


def test_bins_whose_links_end_or_cross_a_cache_block():
    """Free chunks placed by hand so that their size, fd and bk end a 64 KiB block or cross into
    the next (the bin walks read a cached block's words directly, and must fall back across
    the edge): the chains are still what the builder linked.  A damaged fd to a chunk 8 bytes
    short of a block's end (aligned to a word, not to MALLOC_ALIGNMENT) is read across it too."""
    b = HeapBuilder((2, 36), 8)
    base = b.sbrk_base  # 64 KiB aligned (default_bases)
    placed = []
    # (offset of the chunk in its block, size, kind), one chunk a block: at 0xfff0 its size is
    # the block's last word (fd and bk in the next block), at 0xffe0 fd and bk are its last two.
    for block, (offset, size, kind) in enumerate([(0xFFF0, 0x100, "small"), (0xFFF0, 0x20, "fast"),
                                                 (0xFFE0, 0x100, "small"), (0xFFE0, 0x20, "fast"),
                                                 (0xFFE0, 0x30, "fast")]):
        target = base + block * 0x10000 + offset
        b.chunk(target - b.pos)  # in use, up to the chunk
        placed.append(b.chunk(size, kind))
    b.chunk(0x20)  # in use before top
    s = b.build()
    assert [(a - base) & 0xFFFF for a in placed] == [0xFFF0, 0xFFF0, 0xFFE0, 0xFFE0, 0xFFE0]
    heap, _, _ = walk(s)  # the walk caches every block: the bin walks then read their words there
    chains, problems = bins_of(s, heap)
    assert problems == []
    assert chain_tuples(chains) == [(c.kind, c.index, c.size, c.count, c.chunks) for c in s.chains]
    listed = sorted((c.kind, chunk) for c in chains if c.kind != "tcache" for chunk in c.chunks)
    assert listed == sorted([("small", placed[0]), ("fast", placed[1]), ("small", placed[2]), ("fast", placed[3]),
                             ("fast", placed[4])])
    sizes = {chunk: size for chain in chains for chunk, size in zip(chain.chunks, chain.sizes)}
    assert [sizes[a] for a in placed] == [0x100, 0x20, 0x100, 0x20, 0x30]
    # The small bin lists placed[2] first (freed last); point its fd 0x18 before the end of the
    # fourth block: that "chunk"'s size, fd and bk are the block's last two words and the next's first.
    odd = base + 4 * 0x10000 - 0x18
    s.poke(placed[2] + 16, odd)
    heap, _, _ = walk(s)
    small = next(c for c in bins_of(s, heap)[0] if c.kind == "small")
    assert list(small.chunks[:2]) == [placed[2], odd]
    assert small.sizes[1] == s.peek(odd + 8) & ~7


def test_a_damaged_top_size_is_not_the_main_heaps_end():
    """heap_spans takes sbrk_base .. the end of top as the contiguous main heap's one span, but
    not when top's size is past system_mem (house of force: -1): that span would hold libc's
    data (2.43's static dummy tcache) and everything else above the heap."""
    from tests.synthetic import HeapBuilder
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    arena = heap.main_arena
    [(start, end)] = model.heap_spans(heap.reader, arena, heap.mp.sbrk_base)
    assert (start, end) == (heap.mp.sbrk_base, s.top + (s.peek(s.top + 8) & ~7))
    s.poke(s.top + 8, (1 << 64) - 8 | 1)  # top's size: -1
    damaged = s.heap()
    spans = model.heap_spans(damaged.reader, damaged.main_arena, damaged.mp.sbrk_base)
    assert all(e - st <= damaged.main_arena.state.system_mem for st, e in spans), spans
