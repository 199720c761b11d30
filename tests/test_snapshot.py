"""heap diff's gdb-free part on hand-written records: the merge, top, bins, the compact record."""

from array import array
from typing import List, Optional, Sequence, Tuple

from gdb_heap.free_index import FreeIndex
from gdb_heap.snapshot import ArenaRecord, Snapshot, diff, diff_arena, diff_mmapped, record_arena

# codes by hand: 0 in use, 1 top, 2 tcache, 3 fast, 4 unsorted, 5 small, 6 large
Chunk = Tuple[int, int, int, Optional[int]]  # address, size field, code, bin index


def rec(chunks: Sequence[Chunk], top: int = 0, top_size: int = 0, system_mem: int = 0x21000,
        address: int = 0x7000) -> ArenaRecord:
    r = ArenaRecord(address, True, top, top_size, system_mem)
    for a, s, c, i in chunks:  # one chunk a batch: any address may follow any
        r.add([a], [s], bytearray([c]), [] if i is None else [0], [] if i is None else [i])
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
    assert r.addresses() == [0x1000, 0x1290, 0x12b0, 0x12e0] and list(r.sizes) == [0x291, 0x21, 0x31, 0x20d21]
    assert [row[2:] for row in r.rows()] == [("in_use", None, None), ("in_use", None, None),
                                               ("free", "tcache", 1), ("top", None, None)]


def test_a_record_is_6_bytes_a_chunk():
    """4 bytes of size field, a state byte, a bin index byte; the first chunk's address as a gap
    (its index and address) and every 256th chunk's as a mark."""
    r = rec([(0x1000 + 0x20 * k, 0x21, 0, None) for k in range(1000)])
    assert (r.sizes.typecode, r.indexes.typecode, len(r.marks), list(r.gaps)) == ("I", "B", 4, [0])
    assert r.nbytes == 1000 * (4 + 1 + 1) + 4 * 8 + 16
    assert Snapshot("1", "", 8, [r]).nbytes == 6048


def test_sizes_and_bin_indexes_past_a_byte_widen_their_arrays():
    r = rec([(0x1000, 0x21, 2, 3), (0x1020, 0x100000011, 6, 300), (0x100001030, 0x21, 6, 70000)])
    assert (r.sizes.typecode, r.indexes.typecode) == ("Q", "H")
    assert list(r.rows()) == [(0x1000, 0x21, "free", "tcache", 3), (0x1020, 0x100000011, "free", "large", 300),
                              (0x100001030, 0x21, "free", "large", 0xFFFE)]
    assert r.gaps.tolist() == [0]  # 0x1020 + 0x100000010 is 0x100001030: no gap


def walked(heaps: Sequence[Tuple[int, Sequence[int]]], batch: int) -> Tuple[ArenaRecord, List[int]]:
    """A record of heaps (their first address, their chunks' size fields) added in walk batches of
    `batch` chunks, and every chunk's address worked out here."""
    r, every = ArenaRecord(0x7000, False, 0, 0, 0), []
    for first, sizes in heaps:
        addresses = [first]
        for size in sizes[:-1]:
            addresses.append(addresses[-1] + (size & ~7))
        every += addresses
        for k in range(0, len(sizes), batch):
            r.add(addresses[k:k + batch], sizes[k:k + batch])
    return r, every


def test_every_address_from_the_marks_and_gaps():
    """Three heaps of 700, 1 and 900 chunks of mixed sizes (flag bits set), added 37 at a time:
    each chunk's address from the record alone, through marks and gaps."""
    sizes = [0x20 * (1 + k % 40) | (k % 8) for k in range(1601)]
    r, every = walked([(0x10000, sizes[:700]), (0x5000000, sizes[700:701]), (0x4000000, sizes[701:])], 37)
    assert list(r.gaps) == [0, 700, 701] and len(r.marks) == 7 and r.marks[3] == every[768]
    assert [r.chunk_address(i) for i in range(len(r))] == every == r.addresses()
    assert [r.run(i) for i in (0, 699, 700, 701, 1600)] == [700, 1, 1, 900, 1]
    assert r.following(699, every[699]) == 0x5000000 and r.following(5, every[5]) == every[6]


def test_the_same_sizes_past_a_gap_elsewhere_are_other_chunks():
    """Both records hold 600 chunks of 0x20, the second heap at 0x100000; before, the first heap
    holds 300, after, 301: a run compared across the gap would call them all the same."""
    before, _ = walked([(0x1000, [0x21] * 300), (0x100000, [0x21] * 300)], 64)
    after, _ = walked([(0x1000, [0x21] * 301), (0x100020, [0x21] * 299)], 64)
    d = diff_arena(0x7000, before, after)
    assert [r[0] for r in d.appeared] == [0x1000 + 0x20 * 300] and [r[0] for r in d.disappeared] == [0x100000]
    assert d.changed == []
    moved, _ = walked([(0x1000, [0x21] * 300), (0x200000, [0x21] * 300)], 64)
    d = diff_arena(0x7000, before, moved)
    assert [r[0] for r in d.appeared] == [0x200000 + 0x20 * k for k in range(300)]
    assert [r[0] for r in d.disappeared] == [0x100000 + 0x20 * k for k in range(300)]
    assert diff_arena(0x7000, before, walked([(0x1000, [0x21] * 300), (0x100000, [0x21] * 300)], 7)[0]).empty
