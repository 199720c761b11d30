"""A summary's free chunks counted from the bins' lists (gdb_heap/listed.py), the walk vouching
for them: on hand-made chains and batches, against the rows worked out by hand and against the
exact count over the free index (model.summarise), and every way the walk refuses its word."""

from array import array
from collections import Counter

import pytest

from gdb_heap import listed, model
from gdb_heap.model import BinChain

SPANS = [(0x1000, 0x3000)]
TOP = 0x1200
# A heap by hand: 0x1000 in use (0x20), 0x1020 free in small[2] (0x30), 0x1050 in use (0xb0),
# 0x1100 free in fast[1] (0x30), 0x1130 in use (0x20), 0x1150 tcache[7] (0xb0), top 0x1200.
BATCHES = [([0x1000, 0x1020, 0x1050], [0x21, 0x31, 0xb1]), ([0x1100, 0x1130, 0x1150], [0x30, 0x21, 0xb1]),
           ([TOP], [0x1e01])]
CHAINS = [BinChain("tcache", 9, 0xb0, 1, [0x1150], sizes=array("Q", [0xb0])),
          BinChain("small", 2, 0x30, 1, [0x1020], sizes=array("Q", [0x30])),
          BinChain("fast", 1, 0x30, 1, [0x1100], sizes=array("Q", [0x30]))]
BY_HAND = {("in_use", None, 0x20): 2, ("in_use", None, 0xb0): 1, ("free", "small", 0x30): 1,
           ("free", "fast", 0x30): 1, ("free", "tcache", 0xb0): 1, ("top", None, 0x1e00): 1}


def counted(batches):
    every = model.SizeCount(TOP)
    for batch in batches:
        every(batch)
    return every


def vouched(found, batches, spans=SPANS, region=SPANS[0]):
    vouch = listed.Vouch(found.addresses, spans)
    for addresses, _ in batches:
        vouch.batch(region[0], region[1], addresses)
    return vouch.sound()


def rows(chains, batches=BATCHES):
    found = listed.listed(chains, SPANS, TOP)
    assert found is not None and vouched(found, batches)
    every = counted(batches)
    return listed.summary_rows(every.every, found, every.top_sizef)


def exact(chains, batches=BATCHES):
    return model.summarise(batches, TOP, model.free_index(chains))


def test_the_bins_counts_are_the_rows_by_hand_and_the_exact_count():
    assert rows(CHAINS) == BY_HAND == exact(CHAINS)


def test_the_listed_addresses_are_sorted_and_counted_by_bin_and_size():
    found = listed.listed(CHAINS, SPANS, TOP)
    assert found is not None
    assert list(found.addresses) == [0x1020, 0x1100, 0x1150]
    assert found.pairs == Counter({(("tcache", 9), 0xb0): 1, (("small", 2), 0x30): 1, (("fast", 1), 0x30): 1})
    assert found.top is None


def test_another_arenas_chunk_in_a_tcache_is_not_this_arenas():
    # a thread's tcache holds a chunk of another arena (0x9000): not counted here, as the walk
    # never meets it; the same chunk in this arena's own bin would be damage (next tests)
    chains = [BinChain("tcache", 9, 0xb0, 2, [0x9000, 0x1150], sizes=array("Q", [0xb0, 0xb0]))] + CHAINS[1:]
    found = listed.listed(chains, SPANS, TOP)
    assert found is not None and list(found.addresses) == [0x1020, 0x1100, 0x1150]
    assert rows(chains) == BY_HAND == exact(chains)


def test_top_listed_by_a_bin_stays_top():
    chains = CHAINS + [BinChain("unsorted", 1, 0, 1, [TOP], sizes=array("Q", [0x1e00]))]
    found = listed.listed(chains, SPANS, TOP)
    assert found is not None and found.top == (("unsorted", 1), 0x1e00)
    assert rows(chains) == BY_HAND == exact(chains)


def test_a_chain_without_its_sizes_gives_no_counts():
    assert listed.listed([BinChain("fast", 1, 0x30, 1, [0x1100])], SPANS, TOP) is None


@pytest.mark.parametrize("why, chains, batches, spans", [
    # a fast bin's fd overwritten to a "chunk" inside 0x1020 (a fake chunk in the heap), among
    # a batch's chunks, or inside its last chunk, 0x1050
    ("inside a chunk", CHAINS + [BinChain("fast", 2, 0x40, 1, [0x1030], sizes=array("Q", [0x40]))], BATCHES, SPANS),
    ("inside a last chunk", CHAINS + [BinChain("fast", 2, 0x40, 1, [0x1060], sizes=array("Q", [0x40]))], BATCHES,
     SPANS),
    # ... or outside every heap (the walk never comes near it)
    ("outside", CHAINS + [BinChain("fast", 2, 0x40, 1, [0x5000], sizes=array("Q", [0x40]))], BATCHES, SPANS),
    # a chunk in two bins (a double free): counted once by the exact way, twice by the bins'
    ("listed twice", CHAINS + [BinChain("fast", 2, 0x30, 1, [0x1020], sizes=array("Q", [0x30]))], BATCHES, SPANS),
    # the walk broke off before a listed chunk (its batches end sooner)
    ("not walked", CHAINS, BATCHES[:1], SPANS),
    # the walk went through a region it was not told of
    ("another region", CHAINS, BATCHES, [(0x1000, 0x2000)]),
])
def test_the_walk_refuses_its_word(why, chains, batches, spans):
    found = listed.listed(chains, SPANS, TOP)
    assert found is not None
    assert not vouched(found, batches, spans), why


def test_regions_walked_out_of_address_order_are_vouched_for():
    # a thread arena whose older heap (walked first) lies above the newer one
    low, high = (0x1000, 0x2000), (0x8000, 0x9000)
    chains = [BinChain("fast", 1, 0x30, 2, [0x8020, 0x1020], sizes=array("Q", [0x30, 0x30]))]
    found = listed.listed(chains, [low, high], 0x1060)
    assert found is not None
    vouch = listed.Vouch(found.addresses, [low, high])
    vouch.batch(*high, [0x8000, 0x8020, 0x8050])
    vouch.batch(*low, [0x1000, 0x1020, 0x1050])
    assert vouch.sound()
    vouch = listed.Vouch(found.addresses, [low, high])
    vouch.batch(*high, [0x8000, 0x8020, 0x8050])
    vouch.batch(*high, [0x8000, 0x8020, 0x8050])  # the same chunks given twice: 0x1020 never met
    assert not vouch.sound()
