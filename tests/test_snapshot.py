"""heap diff's gdb-free part on hand-written records: the merge, top, bins, the compact record."""

from array import array
from typing import List, Optional, Sequence, Tuple

from gdb_heap.free_index import FreeIndex
from gdb_heap.snapshot import NO_INDEX, ArenaRecord, Snapshot, diff, diff_arena, diff_mmapped, record_arena

# codes by hand: 0 in use, 1 top, 2 tcache, 3 fast, 4 unsorted, 5 small, 6 large
Chunk = Tuple[int, int, int, Optional[int]]  # address, size field, code, bin index


def rec(chunks: Sequence[Chunk], top: int = 0, top_size: int = 0, system_mem: int = 0x21000,
        address: int = 0x7000) -> ArenaRecord:
    r = ArenaRecord(address, True, top, top_size, system_mem)
    for a, s, c, i in chunks:
        r.addresses.append(a)
        r.sizes.append(s)
        r.codes.append(c)
        r.indexes.append(NO_INDEX if i is None else i)
    return r


BASE: List[Chunk] = [(0x1000, 0x291, 0, None), (0x1290, 0x21, 0, None), (0x12b0, 0x31, 0, None),
                    (0x12e0, 0x20d21, 1, None)]


def test_identical_records_differ_in_nothing():
    d = diff_arena(0x7000, rec(BASE, 0x12e0, 0x20d20), rec(BASE, 0x12e0, 0x20d20))
    assert (d.appeared, d.disappeared, d.changed) == ([], [], []) and d.empty and d.bins() == {}


def test_a_malloc_cut_from_top_appears_and_top_moves():
    after = BASE[:3] + [(0x12e0, 0x41, 0, None), (0x1320, 0x20ce1, 1, None)]
    d = diff_arena(0x7000, rec(BASE, 0x12e0, 0x20d20), rec(after, 0x1320, 0x20ce0))
    assert d.appeared == [(0x12e0, 0x41, "in_use", None, None)]  # top itself is in no list
    assert d.disappeared == [] and d.changed == [] and not d.empty


def test_a_free_into_top_disappears():
    after = BASE[:3] + [(0x12e0, 0x41, 0, None), (0x1320, 0x20ce1, 1, None)]
    d = diff_arena(0x7000, rec(after, 0x1320, 0x20ce0), rec(BASE, 0x12e0, 0x20d20))
    assert d.disappeared == [(0x12e0, 0x41, "in_use", None, None)] and d.appeared == [] and d.changed == []


def test_a_free_changes_state_and_clears_the_next_p_bit():
    before = [(0x1000, 0x291, 0, None), (0x1290, 0x461, 0, None), (0x16f0, 0x21, 0, None), (0x1710, 0x20, 1, None)]
    after = [(0x1000, 0x291, 0, None), (0x1290, 0x461, 4, 0), (0x16f0, 0x20, 0, None), (0x1710, 0x20, 1, None)]
    d = diff_arena(0x7000, rec(before, 0x1710, 0x20), rec(after, 0x1710, 0x20))
    assert d.changed == [((0x1290, 0x461, "in_use", None, None), (0x1290, 0x461, "free", "unsorted", 0)),
                         ((0x16f0, 0x21, "in_use", None, None), (0x16f0, 0x20, "in_use", None, None))]
    assert d.bins() == {"unsorted": (1, 0)}


def test_bins_gained_and_lost():
    before = [(0x1000, 0x31, 2, 1), (0x1030, 0x31, 2, 1), (0x1060, 0x91, 5, 8)]
    after = [(0x1000, 0x31, 0, None), (0x1030, 0x31, 3, 1), (0x1060, 0x91, 5, 8), (0x10f0, 0x31, 2, 1)]
    d = diff_arena(0x7000, rec(before), rec(after))
    assert d.bins() == {"tcache[1]": (1, 2), "fast[1]": (1, 0)}


def test_long_equal_runs_with_sparse_changes():
    # 10000 chunks of 0x20; the second record frees every 1000th and drops the last 5
    n = 10000
    before = [(0x1000 + 0x20 * k, 0x21, 0, None) for k in range(n)]
    after = [(a, s, 2 if k % 1000 == 7 else c, 0 if k % 1000 == 7 else i)
             for k, (a, s, c, i) in enumerate(before[:n - 5])]
    d = diff_arena(0x7000, rec(before), rec(after))
    assert [old[0] for old, _ in d.changed] == [0x1000 + 0x20 * k for k in range(7, n, 1000)]
    assert all(new[2:] == ("free", "tcache", 0) for _, new in d.changed)
    assert [r[0] for r in d.disappeared] == [0x1000 + 0x20 * k for k in range(n - 5, n)]
    assert d.appeared == []


def test_interleaved_addresses_merge_in_order():
    before = [(0x1000, 0x21, 0, None), (0x1040, 0x21, 0, None), (0x1080, 0x21, 0, None)]
    after = [(0x1020, 0x21, 0, None), (0x1040, 0x21, 0, None), (0x1060, 0x21, 0, None), (0x10a0, 0x21, 0, None)]
    d = diff_arena(0x7000, rec(before), rec(after))
    assert [r[0] for r in d.appeared] == [0x1020, 0x1060, 0x10a0]
    assert [r[0] for r in d.disappeared] == [0x1000, 0x1080]


def test_arenas_that_appear_and_go():
    main = rec(BASE, 0x12e0, 0x20d20)
    thread = rec([(0x9000, 0x255, 0, None), (0x9250, 0x1000, 1, None)], 0x9250, 0x1000, 0x21000, address=0x8000)
    before = Snapshot("1", "stop 1", 8, [main, thread])
    after = Snapshot("2", "stop 2", 8, [main])
    d_main, d_gone = diff(before, after)
    assert d_main.empty and d_gone.address == 0x8000 and d_gone.after is None
    assert d_gone.disappeared == [(0x9000, 0x255, "in_use", None, None)]  # top is not a chunk of the lists
    (d_new,) = diff(after, before, [0x8000])
    assert d_new.before is None and [r[0] for r in d_new.appeared] == [0x9000]


def test_mmapped_chunks_that_appear_and_go():
    a = Snapshot("1", "", 8, [], 0, array("Q", [0x7f0000000000, 0x7f0000100000]), array("Q", [0x21002, 0x41002]))
    b = Snapshot("2", "", 8, [], 0, array("Q", [0x7f0000100000, 0x7f0000200000]), array("Q", [0x41002, 0x21002]))
    d = diff_mmapped(a, b)
    assert d.appeared == [(0x7f0000200000, 0x21002)] and d.disappeared == [(0x7f0000000000, 0x21002)]


def test_record_arena_classifies_from_batches_and_bins():
    batches = [([0x1000, 0x1290], [0x291, 0x21]), ([0x12b0, 0x12e0], [0x31, 0x20d21])]
    free = FreeIndex.of({0x12b0: ("tcache", 1), 0x12e0: ("unsorted", 0), 0x5000: ("fast", 0)})  # top listed, a stray
    r = record_arena(0x7000, True, 0x12e0, 0x20d20, 0x21000, iter(batches), free)
    assert list(r.addresses) == [0x1000, 0x1290, 0x12b0, 0x12e0] and list(r.sizes) == [0x291, 0x21, 0x31, 0x20d21]
    assert [r.row(i)[2:] for i in range(4)] == [("in_use", None, None), ("in_use", None, None),
                                               ("free", "tcache", 1), ("top", None, None)]


def test_a_record_is_19_bytes_a_chunk():
    r = rec([(0x1000 + 0x20 * k, 0x21, 0, None) for k in range(1000)])
    assert r.nbytes == 1000 * (8 + 8 + 1 + 2)
    assert Snapshot("1", "", 8, [r]).nbytes == 19000
