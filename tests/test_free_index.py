"""FreeIndex: the free chunks as sorted compact arrays, checked against hand-written places."""

from gdb_heap.free_index import FreeIndex


def test_build_sorts_and_keeps_the_first_group_of_a_chunk_in_two_bins():
    index = FreeIndex.build([(("tcache", 2), [0x5030, 0x5010]),
                             (("fast", 1), [0x4000, 0x5010]),  # 0x5010 also in a fast bin (damage)
                             (("small", 5), [0x9000])])
    assert list(index) == [0x4000, 0x5010, 0x5030, 0x9000]
    assert list(index.items()) == [(0x4000, ("fast", 1)), (0x5010, ("tcache", 2)), (0x5030, ("tcache", 2)),
                                   (0x9000, ("small", 5))]
    assert len(index) == 4 and index.nbytes() == 4 * (8 + 2)


def test_lookups_hit_only_listed_addresses():
    index = FreeIndex.of({0x1000: ("unsorted", 1), 0x2000: ("large", 64)})
    assert index[0x2000] == ("large", 64) and index.get(0x1000) == ("unsorted", 1)
    assert index.get(0x1010) is None and index.get(0x3000, ("x", 0)) == ("x", 0)
    assert 0x1000 in index and 0x1008 not in index and 0xfff not in index and "0x1000" not in index
    try:
        index[0x1fff]
    except KeyError as e:
        assert e.args == (0x1fff,)
    else:
        raise AssertionError("a missing chunk is a KeyError")


def test_around_gives_the_batch_range_both_ends_included():
    index = FreeIndex.of({0x100: ("fast", 0), 0x200: ("fast", 1), 0x300: ("small", 2), 0x400: ("large", 70)})
    assert index.around(0x200, 0x300) == {0x200: ("fast", 1), 0x300: ("small", 2)}
    assert index.around(0x201, 0x2ff) == {}
    assert list(index.around(0, 0x1000)) == [0x100, 0x200, 0x300, 0x400]  # address order


def test_an_empty_index():
    index = FreeIndex()
    assert len(index) == 0 and list(index.items()) == [] and index.get(0x10) is None and index.around(0, 99) == {}


def test_summarise_counts_bins_top_and_strays_by_hand():
    from gdb_heap.model import summarise
    # two batches: the first has no free chunk; the second holds a fast chunk, a small one, and
    # top, which a bin lists too (damage); a bin also lists 0x5008, which is no walked chunk.
    batches = [([0x1000, 0x1020, 0x1050], [0x21, 0x31, 0x21]),
               ([0x1070, 0x1090, 0x1190, 0x11b0], [0x21, 0x101, 0x21, 0x20e51])]
    free = FreeIndex.of({0x1070: ("fast", 0), 0x1090: ("small", 16), 0x11b0: ("unsorted", 1),
                         0x5008: ("fast", 0)})
    rows = summarise(iter(batches), 0x11b0, free)
    assert dict(rows) == {("in_use", None, 0x20): 3, ("in_use", None, 0x30): 1, ("free", "fast", 0x20): 1,
                          ("free", "small", 0x100): 1, ("top", None, 0x20e50): 1}
    # top alone in its batch, as the walk gives it, and no bin listing it
    rows = summarise(iter([([0x1000], [0x21]), ([0x1020], [0x20fe1])]), 0x1020, FreeIndex())
    assert dict(rows) == {("in_use", None, 0x20): 1, ("top", None, 0x20fe0): 1}
    # a limit cuts inside the second batch
    rows = summarise(iter(batches), 0x11b0, free, limit=4)
    assert dict(rows) == {("in_use", None, 0x20): 2, ("in_use", None, 0x30): 1, ("free", "fast", 0x20): 1}


def test_walked_gives_the_free_chunks_a_batch_holds_with_their_size_fields():
    index = FreeIndex.of({0x1000: ("fast", 0), 0x1020: ("small", 3), 0x1048: ("fast", 1), 0x1090: ("large", 70),
                          0x2000: ("unsorted", 1)})
    addresses = [0x1020, 0x1040, 0x1060, 0x1090]  # 0x1000 is before the batch, 0x1048 inside a chunk
    sizes = [0x21, 0x21, 0x31, 0x411]
    assert list(index.walked(addresses, sizes)) == [(("small", 3), 0x21), (("large", 70), 0x411)]
    assert list(index.walked([0x1040, 0x1060], [0x21, 0x31])) == []  # only 0x1048 in range: not a chunk
    assert list(index.walked([0x3000], [0x21])) == [] and list(index.walked([], [])) == []
    assert list(index.walked([0x1000, 0x1020], [0x20, 0x21])) == [(("fast", 0), 0x20), (("small", 3), 0x21)]


def test_build_orders_many_groups_and_any_address():
    # 300 groups (9 bits of group number beside each address), their chunks interleaved, and
    # addresses up to 2**64 - 16 (a damaged list may hold any word): each address keeps its
    # group, whatever the room its packing takes
    groups = [(("small", g), [0x10000 + 0x10 * (g + 300 * k) for k in range(3)] + [(1 << 64) - 0x10 * (g + 1)])
              for g in range(300)]
    index = FreeIndex.build(groups)
    by_hand = sorted((chunk, place) for place, chunks in groups for chunk in chunks)
    assert list(index.items()) == by_hand and len(index) == 1200


def test_build_refuses_more_groups_than_its_places_hold():
    try:
        FreeIndex.build([(("fast", 0), [0x10])] * ((1 << 16) + 1))
    except ValueError as e:
        assert "too many bins" in str(e)
    else:
        raise AssertionError("65537 groups are more than a 16-bit place number holds")
