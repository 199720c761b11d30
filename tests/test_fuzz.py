"""Fuzzing the model with corrupted synthetic heaps (Hypothesis).

A random valid heap (random chunk sizes, random bins, random free order) is built by
tests/synthetic.py, then bytes and words of the heap region and of main_arena are
overwritten at random.  Everything the model offers, `heap check`'s checks included, runs on the result and must:
  - terminate, within a bounded number of underlying memory reads (derived below);
  - raise nothing but HeapError (MemoryReadError is one);
  - read memory only through the image: each read either returns bytes inside one region or
    raises MemoryReadError, which the model must catch or turn into a HeapError.

GDB_HEAP_FUZZ_EXAMPLES sets the number of examples (default 200; a long run uses 10000).
Hypothesis prints the failing example and how to reproduce it.
"""

from __future__ import annotations

import os
import signal
from typing import Dict, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdb_heap import model
from gdb_heap.check import Checker, check_arena
from gdb_heap.glibc_checks import TABLE
from gdb_heap.errors import HeapError, MemoryReadError
from gdb_heap.heap import Heap
from gdb_heap.memory import BLOCK, PAGE, Bytes, ImageMemory, Reader
from gdb_heap.model import Problem
from tests import handbins as hb
from tests.synthetic import HeapBuilder, Synthetic

EXAMPLES = int(os.environ.get("GDB_HEAP_FUZZ_EXAMPLES", "200"))
CONFIGS = [((2, 36), 8), ((2, 27), 8), ((2, 42), 8), ((2, 31), 8), ((2, 36), 4), ((2, 26), 4), ((2, 43), 8)]
REGULAR = ("unsorted", "small", "large")
UNMAPPED = 0x10000000
TIME_LIMIT = 30.0  # seconds per example: a hang becomes a failure, not a stuck suite


class RecordingMemory(ImageMemory):
    """ImageMemory that checks and counts every read the model makes."""

    def __init__(self, image: ImageMemory) -> None:
        super().__init__(dict(image.regions))
        self.log: List[Tuple[int, int, bool]] = []

    def read(self, address: int, length: int) -> Bytes:
        try:
            data = super().read(address, length)
        except MemoryReadError:
            self.log.append((address, length, False))
            raise
        assert len(data) == length
        assert any(start <= address and address + length <= start + len(d) for start, d in self.regions), (
            f"read {length} at {address:#x} outside the image")
        self.log.append((address, length, True))
        return data


# Strategies made once (building strategies inside a draw is what makes Hypothesis slow);
# per-heap ranges are applied with a modulo.
CONFIG_S = st.sampled_from(CONFIGS)
KIND_S = st.sampled_from([None, None, "tcache", "fast", "unsorted", "small", "large"])
SMALL_INT = st.integers(0, 1 << 16)
WORD64 = st.integers(0, (1 << 64) - 1)
DELTA = st.integers(-64, 64)
PICK = st.integers(0, 4)


@st.composite
def valid_heaps(draw) -> Tuple[HeapBuilder, Synthetic]:
    version, word = draw(CONFIG_S)
    b = HeapBuilder(version, word)
    L = b.layout
    A, m = L.malloc_alignment, L.minsize
    fast_sizes = list(range(m, b.max_fast + 1, A)) if L.features.fastbins else []
    tcache_left: Dict[int, int] = {}
    n = draw(SMALL_INT) % 31
    last: Optional[str] = None
    for _ in range(n):
        kind = draw(KIND_S)
        r = draw(SMALL_INT)
        if kind == "fast" and not fast_sizes:
            kind = None
        if kind == "tcache":
            index = r % 13
            size = hb.tcache_size(index, word)
            if tcache_left.get(index, 0) >= b.tcache_count:
                kind = None
            else:
                tcache_left[index] = tcache_left.get(index, 0) + 1
        elif kind == "fast":
            size = fast_sizes[r % len(fast_sizes)]
        elif kind == "unsorted":
            size = m + A * (r % 0x100)
        elif kind == "small":
            size = m + A * (r % ((L.min_large_size - m) // A))
        elif kind == "large":
            size = L.min_large_size + A * (r % 0x300)
        else:
            size = m + A * (r % 41)
        if kind in REGULAR and last in REGULAR:
            b.chunk(m)
        b.chunk(size, kind)
        last = kind
    if last in REGULAR:
        b.chunk(m)
    free = [a for a, _, k in b.plan if k]
    order = draw(st.permutations(free))
    top_min = (m, 0x100, 0x2000)[draw(SMALL_INT) % 3]
    return b, b.build(free_order=order, top_size_min=top_min)


def interesting_value(draw, s: Synthetic) -> int:
    mask = (1 << (8 * s.S)) - 1
    addrs = [c.address for c in s.chunks]
    how = draw(PICK)
    if how == 0:
        return int(draw(WORD64)) & mask
    if how == 1:
        fixed = [0, 1, 8, 0x10, 0x21, UNMAPPED, s.arena, s.top, s.sbrk_base, s.heap_end, mask, mask - 0xF]
        return fixed[int(draw(SMALL_INT)) % len(fixed)]
    a: int = addrs[int(draw(SMALL_INT)) % len(addrs)] + int(draw(DELTA))
    if how == 2:
        return a & mask
    if how == 3:
        return ((a >> 12) ^ addrs[int(draw(SMALL_INT)) % len(addrs)]) & mask  # safe-linked-looking
    return (a + 2 * s.S) & mask  # a user pointer


@st.composite
def corrupted(draw):
    b, s = draw(valid_heaps())
    n = draw(SMALL_INT) % 7
    arena_size = s.layout.malloc_state.size
    for _ in range(n):
        if draw(SMALL_INT) % 3:
            base, span = s.sbrk_base, s.heap_end - s.sbrk_base
        else:
            base, span = s.arena, arena_size
        if draw(SMALL_INT) % 3 == 0:
            off = draw(WORD64) % span
            s.poke(base + off, draw(SMALL_INT) & 0xFF, 1)
        else:
            off = draw(WORD64) % (span // s.S) * s.S
            s.poke(base + off, interesting_value(draw, s))
    probes = []
    targets = [c.address for c in s.chunks] + [c.address + 2 * s.S for c in s.chunks]
    for _ in range(draw(SMALL_INT) % 9):
        how = draw(PICK) % 3
        if how == 0:
            probes.append(draw(WORD64) & ((1 << (8 * s.S)) - 1))
        elif how == 1:
            probes.append(s.sbrk_base - 64 + draw(WORD64) % (s.heap_end - s.sbrk_base + 128))
        else:
            probes.append(targets[draw(SMALL_INT) % len(targets)])
    return s, probes


def read_bound(s: Synthetic, n_arenas: int, n_probes: int) -> int:
    """How many underlying reads the model may make at most.

    The Reader caches every block (64 KiB) or page it tried, readable or not, so successful
    reads are at most one per block plus one per page of the image, and every failed read ends
    one bounded walk: a bin chain (per arena: 126 regular bins, the fastbins, the tcache bins),
    the heap walk, the arena ring, a where probe (a few header reads each).  Each ending
    costs at most a block read, a page read and a direct read of a straddling range, and a walk
    step that straddles a block boundary costs one direct read.  16 reads per ending covers it.
    """
    image_pages = sum((end - start) // PAGE + (end - start) // BLOCK + 2 for start, end in s.regions)
    per_arena = 126 + s.layout.nfastbins + s.layout.tcache_bins + 8
    return 2 * image_pages + 16 * (n_arenas * per_arena + 4 * n_probes + 16)


def exercise(s: Synthetic, probes: List[int]) -> Tuple[RecordingMemory, int]:
    memory = RecordingMemory(s.memory)
    heap = Heap(Reader(memory, s.S), s.layout, s.anchors)
    n_arenas = 0
    try:
        arenas = heap.arenas
    except HeapError:
        arenas = []
    n_arenas = len(arenas)
    for arena in arenas:
        for kinds in (model.BIN_KINDS, ("tcache",), ("fast",), ("unsorted",), ("small",), ("large",),
                      ("unsorted", "large")):
            chains, problems = heap.bins(arena, kinds)
            for c in chains:
                assert c.kind in kinds
                assert isinstance(c.count, int) and c.count >= 0
        free = heap.free_index(arena)
        walk_problems: List[Problem] = []
        chunks = list(heap.chunks(arena, walk_problems))
        addresses = [a for a, _ in chunks]
        assert addresses == sorted(addresses) and len(set(addresses)) == len(addresses)
        for address, _ in chunks:
            model.classify(address, arena.state.top, free)
        rows = model.summarise(heap.chunk_batches(arena, []), arena.state.top, free)
        assert sum(rows.values()) == len(chunks)
        try:
            t = heap.top(arena)
            assert t.end == t.address + t.size
        except HeapError:
            pass
        report = check_arena(heap, arena)
        assert report.chunks == len(chunks)
        for p in report.problems:
            assert isinstance(p.address, int) and p.message
            assert p.glibc_abort is None or p.glibc_abort in {m.text for m in TABLE.values()}
        assert [p.address for p in report.problems] == sorted(p.address for p in report.problems)
        top_check = Checker(heap, arena)
        top_check.top()
        top_check.finish()
    try:
        heap.initialised  # noqa: B018
    except HeapError:
        pass
    for address in probes:
        try:
            found = heap.where(address)
            assert found.chunk <= address
        except HeapError:
            pass
    return memory, read_bound(s, max(1, n_arenas), len(probes))


def _on_alarm(signum, frame):
    raise TimeoutError(f"an example ran for more than {TIME_LIMIT} s: a hang?")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(corrupted())
def test_corrupted_heaps_never_crash_or_hang(case):
    s, probes = case
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        memory, bound = exercise(s, probes)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(memory.log) <= bound, f"{len(memory.log)} reads > bound {bound}"


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_heaps())
def test_valid_random_heaps_match_the_builder(built):
    """Uncorrupted random heaps: the model's answers are exactly the builder's record."""
    _, s = built
    heap = s.heap()
    arena = heap.main_arena
    problems: List[Problem] = []
    chunks = list(heap.chunks(arena, problems))
    assert problems == []
    assert chunks == [(c.address, c.size_field) for c in s.chunks]
    free = heap.free_index(arena)
    assert [model.classify(a, s.top, free) for a, _ in chunks] == [(c.state, c.bin, c.index) for c in s.chunks]
    chains, bin_problems = heap.bins(arena)
    assert bin_problems == []
    assert check_arena(heap, arena).problems == []  # no false alarm on a healthy heap
    assert [(c.kind, c.index, c.size, c.count, c.chunks) for c in chains] == [
        (c.kind, c.index, c.size, c.count, c.chunks) for c in s.chains]
