"""snapshot.take on synthetic heaps (tests/synthetic.py): the record holds every chunk the
builder laid out, with the state and bin the builder put it in (its own record, not the
model's), top as "top", the mmapped chunks, an arena before its first malloc; and diff_arena's
galloping merge on runs whose addresses differ but whose bins agree."""

from __future__ import annotations

from dataclasses import replace
from typing import List

from gdb_heap import snapshot
from gdb_heap.free_index import FreeIndex
from gdb_heap.heap import Heap
from gdb_heap.mappings import Mapping
from gdb_heap.memory import ImageMemory, Reader
from gdb_heap.snapshot import diff_arena
from tests.synthetic import every_bin_heap, uninitialised_image
from tests.test_snapshot import Chunk, rec

CODES = {("in_use", None): 0, ("top", None): 1, ("free", "tcache"): 2, ("free", "fast"): 3, ("free", "unsorted"): 4,
         ("free", "small"): 5, ("free", "large"): 6}


def test_take_records_every_chunk_as_the_builder_laid_it_out():
    _, s = every_bin_heap()
    snap = snapshot.take(s.heap(), "before", "stop 2, 10:00:00")
    assert (snap.name, snap.when, snap.size_sz, snap.selected) == ("before", "stop 2, 10:00:00", 8, s.arena)
    (arena,) = snap.arenas
    assert (arena.address, arena.main, arena.top, arena.top_size) == (s.arena, True, s.top, s.top_size)
    assert arena.system_mem == s.heap_end - s.sbrk_base
    assert arena.addresses() == [c.address for c in s.chunks]
    assert list(arena.sizes) == [c.size_field for c in s.chunks]
    assert list(arena.codes) == [CODES[(c.state, c.bin)] for c in s.chunks]
    # bin indexes as the builder numbered them; the unsorted bin is bin 1
    assert [row[4] for row in arena.rows()] == [None if c.state != "free" else c.index for c in s.chunks]
    assert snap.chunk_count == len(s.chunks) and len(snap.mmapped_addresses) == 0
    # 4 + 1 + 1 bytes a chunk; the first chunk's address as a gap (8 + 8) and as a mark (8)
    assert snap.nbytes == 6 * len(s.chunks) + 24 and len(s.chunks) < 256


def test_take_of_an_arena_before_its_first_malloc():
    s = uninitialised_image()
    snap = snapshot.take(s.heap(), "s", "stop 1")
    (arena,) = snap.arenas
    assert (arena.address, arena.main, arena.top, arena.top_size, len(arena)) == (s.arena, True, s.top, 0, 0)
    assert arena.system_mem == 0


def test_take_with_a_top_pointer_into_nothing():
    _, s = every_bin_heap()
    s.poke(s.arena + s.layout.malloc_state.offset("top"), 0x10)  # a damaged top: no size to read
    snap = snapshot.take(s.heap(), "s", "stop 1")
    assert (snap.arenas[0].top, snap.arenas[0].top_size) == (0x10, 0)


def test_take_records_the_mmapped_chunks():
    """One mmapped chunk of 0x21000 bytes (IS_MMAPPED, prev_size 0) at the start of an anonymous
    mapping of its size."""
    _, s = every_bin_heap()
    mapped = 0x7FFFF7A00000
    page = bytearray(0x21000)
    page[8:16] = (0x21000 | 2).to_bytes(8, "little")
    memory = ImageMemory(dict(s.memory.regions))
    memory.add(mapped, page)
    anchors = replace(s.anchors, mappings=lambda: ([Mapping(mapped, mapped + 0x21000)], "test"))
    snap = snapshot.take(Heap(Reader(memory, 8), s.layout, anchors), "s", "stop 1")
    assert list(snap.mmapped_addresses) == [mapped] and list(snap.mmapped_sizes) == [0x21002]
    assert snap.chunk_count == len(s.chunks) + 1 and snap.nbytes == 6 * len(s.chunks) + 24 + 16


def test_a_run_of_other_addresses_with_the_same_bins_is_no_run():
    """After one equal chunk the merge compares two at once: other addresses with equal sizes,
    states and bins are still other chunks."""
    before: List[Chunk] = [(0x1000, 0x21, 0, None), (0x1020, 0x21, 0, None), (0x1040, 0x21, 0, None)]
    after: List[Chunk] = [(0x1000, 0x21, 0, None), (0x1010, 0x21, 0, None), (0x1030, 0x21, 0, None)]
    d = diff_arena(0x7000, rec(before), rec(after))
    assert [r[0] for r in d.appeared] == [0x1010, 0x1030]
    assert [r[0] for r in d.disappeared] == [0x1020, 0x1040]
    after = [(0x1000, 0x21, 0, None), (0x1020, 0x31, 0, None), (0x1040, 0x21, 2, 0)]  # other sizes, states
    d = diff_arena(0x7000, rec(before), rec(after))
    assert [(old[0], new[1], new[2:]) for old, new in d.changed] == [(0x1020, 0x31, ("in_use", None, None)),
                                                                     (0x1040, 0x21, ("free", "tcache", 0))]
    after = [(0x1000, 0x21, 0, None), (0x1020, 0x21, 2, 0), (0x1040, 0x21, 2, 1)]  # other bins only
    d = diff_arena(0x7000, rec(before), rec(after))
    assert [old[0] for old, _ in d.changed] == [0x1020, 0x1040]


def test_a_run_that_differs_in_one_field_only():
    """Two chunks compared at once after an equal one: the same addresses, and only the sizes,
    only the states or only the bin indexes differ."""
    base: List[Chunk] = [(0x1000, 0x21, 2, 0), (0x1020, 0x21, 2, 0), (0x1040, 0x21, 2, 0)]
    for after in ([(0x1000, 0x21, 2, 0), (0x1020, 0x31, 2, 0), (0x1040, 0x31, 2, 0)],
                  [(0x1000, 0x21, 2, 0), (0x1020, 0x21, 3, 0), (0x1040, 0x21, 3, 0)],
                  [(0x1000, 0x21, 2, 0), (0x1020, 0x21, 2, 1), (0x1040, 0x21, 2, 1)]):
        d = diff_arena(0x7000, rec(base), rec(after))
        assert [old[0] for old, _ in d.changed] == [0x1020, 0x1040], after


def test_take_of_a_damaged_heap_records_the_chunks_up_to_the_damage():
    _, s = every_bin_heap()
    bad = s.chunks[5].address
    s.poke(bad + 8, 0x8)  # a size below MINSIZE: the walk stops there (a problem heap check reports)
    snap = snapshot.take(s.heap(), "s", "stop 1")
    assert snap.arenas[0].addresses()[:6] == [c.address for c in s.chunks[:6]]


def test_bins_order_and_labels():
    d = diff_arena(0x7000, rec([(0x1000, 0x21, 0, None), (0x1020, 0x411, 6, 64), (0x1430, 0x21, 0, None)]),
                   rec([(0x1000, 0x21, 2, 0), (0x1020, 0x411, 0, None), (0x1430, 0x21, 5, 2)]))
    assert d.bins() == {"tcache[0]": (1, 0), "small[2]": (1, 0), "large[64]": (0, 1)}
    assert list(d.bins()) == ["tcache[0]", "small[2]", "large[64]"]
    assert snapshot._bin_order("unsorted") == (2, 0)
    assert snapshot._bin_order("large[12]") == (4, 12)
    assert snapshot._label((0x1000, 0x21, "free", "small", None)) == []
    assert snapshot._label((0x1000, 0x21, "free", None, 3)) == []
    assert snapshot.size_of(0x417) == 0x410 and snapshot.size_of(0x20) == 0x20


def test_record_arena_caps_the_bin_index_and_skips_kinds_it_has_no_code_for():
    free = FreeIndex.of({0x1000: ("large", 0x10000), 0x1020: ("mystery", 3)})
    r = snapshot.record_arena(0x7000, False, 0x1040, 0x1000, 0x21000, iter([([0x1000, 0x1020, 0x1040],
                                                                            [0x21, 0x21, 0x1001])]), free)
    assert (r.address, r.main, r.top, r.top_size, r.system_mem) == (0x7000, False, 0x1040, 0x1000, 0x21000)
    assert [row[2:] for row in r.rows()] == [("free", "large", 0xFFFE), ("in_use", None, None),
                                               ("top", None, None)]
    r = snapshot.record_arena(0x7000, True, 0x9000, 0x1000, 0x21000, iter([([0x1000], [0x21])]), FreeIndex())
    assert next(r.rows())[2:] == ("in_use", None, None)  # a top past every chunk marks none
