"""glibc's version boundaries, each tested on both sides, with the expectations written here by
hand from glibc's source (malloc/malloc.c at each tag):
  2.31 / 2.32  safe-linking: tcache next and fastbin fd hold PROTECT_PTR(&field, p) = (&field >> 12) ^ p
  2.33 / 2.34  tcache_entry.key: the owning tcache struct, then the random tcache_key
  2.41 / 2.42  tcache counts[i] (chunks held) becomes num_slots[i] = mp_.tcache_count - chunks held;
               tcache_init moves from the thread's first malloc-family call to its first
               tcache-sized request, so the tcache struct need no longer be the heap's first chunk
  2.42 / 2.43  no fastbins, 16 tcache slots per size, tcache_init on the first free
"""

import pytest

from gdb_heap.check import check_arena
from gdb_heap.layouts import layout_for
from tests.synthetic import TCACHE_KEY, HeapBuilder


def tcache_heap(version, word=8, tcache_count=None):
    """Three chunks of 0x30 in the tcache (bin 1) and, where there are fastbins, two of 0x20."""
    b = HeapBuilder(version, word, tcache_count=tcache_count)
    fast = layout_for(version, word).features.fastbins
    chunks = []
    for _ in range(3):
        chunks.append(b.chunk(0x30, "tcache"))
        b.chunk(0x20)
    fasts = []
    if fast:
        for _ in range(2):
            fasts.append(b.chunk(0x20, "fast"))
            b.chunk(0x20)
    return chunks, fasts, b.build()


# -- 2.31 / 2.32: safe-linking ------------------------------------------------------------------

@pytest.mark.parametrize("version,protected", [((2, 31), False), ((2, 32), True)])
def test_safe_linking_boundary(version, protected):
    (a, b, c), (f1, f2), s = tcache_heap(version)
    assert s.layout.features.safe_linking is protected
    # Freed in order a, b, c: the tcache list is c -> b -> a, the fastbin f2 -> f1.
    mem_c, mem_b = c + 16, b + 16
    stored = s.peek(mem_c)
    assert stored == ((mem_c >> 12) ^ mem_b if protected else mem_b)
    fd_field = f2 + 16
    assert s.peek(fd_field) == ((fd_field >> 12) ^ f1 if protected else f1)
    heap = s.heap()
    chains, problems = heap.bins(heap.main_arena)
    got = {(ch.kind, ch.index): ch.chunks for ch in chains}
    assert got[("tcache", 1)] == [c, b, a]
    assert got[("fast", 0)] == [f2, f1]
    assert problems == []


# -- 2.33 / 2.34: the tcache key ----------------------------------------------------------------

@pytest.mark.parametrize("version,key_is_struct", [((2, 33), True), ((2, 34), False)])
def test_tcache_key_boundary(version, key_is_struct):
    (a, b, c), _, s = tcache_heap(version)
    L = s.layout
    assert L.tcache_key_is_struct is key_is_struct
    assert L.features.tcache_key_random is (not key_is_struct)
    # What glibc writes (tcache_put): e->key = tcache (2.29-2.33) or tcache_key (2.34+).
    assert s.peek(a + 24) == (s.tcache if key_is_struct else TCACHE_KEY)
    heap = s.heap()
    assert [p for p in check_arena(heap, heap.main_arena).problems if "key" in p.message] == []


@pytest.mark.parametrize("version", [(2, 33), (2, 34)])
def test_overwritten_tcache_key_is_found_on_both_sides(version):
    (a, b, c), _, s = tcache_heap(version)
    s.poke(b + 24, 0x4141414141414141)
    heap = s.heap()
    flagged = [p.address for p in check_arena(heap, heap.main_arena).problems if "key" in p.message]
    assert flagged == [b]


def test_2_34_keys_holding_the_struct_address_are_wrong():
    """From 2.34 a key equal to the tcache struct is not glibc's: with one entry keyed the
    2.33 way and the others by the random key, the odd one is reported (and on 2.33 the
    random one is)."""
    for version, odd_value in (((2, 34), None), ((2, 33), TCACHE_KEY)):
        (a, b, c), _, s = tcache_heap(version)
        s.poke(c + 24, s.tcache if odd_value is None else odd_value)
        heap = s.heap()
        flagged = [p.address for p in check_arena(heap, heap.main_arena).problems if "key" in p.message]
        assert flagged == [c], version


# -- 2.41 / 2.42: counts vs num_slots, and where tcache_init puts the struct --------------------

@pytest.mark.parametrize("version,field", [((2, 41), "counts"), ((2, 42), "num_slots")])
@pytest.mark.parametrize("tcache_count", [7, 5])
def test_tcache_counts_boundary(version, field, tcache_count):
    """mp_.tcache_count = 5 (a tunable) as well as the default: from 2.42 the word glibc keeps is
    the slots left, tcache_count - 3 here; before, the chunks held, 3."""
    _, _, s = tcache_heap(version, tcache_count=tcache_count)
    assert s.layout.counts_field == field
    # counts[] / num_slots[] are the struct's first member, uint16_t since 2.30: bin 1 at +2.
    assert s.peek(s.tcache + 2, 2) == (3 if field == "counts" else tcache_count - 3)
    heap = s.heap()
    chains, problems = heap.bins(heap.main_arena)
    tcache1 = next(ch for ch in chains if (ch.kind, ch.index) == ("tcache", 1))
    assert tcache1.count == 3 and problems == []


@pytest.mark.parametrize("version,always,often", [((2, 41), True, True), ((2, 42), False, True),
                                                  ((2, 43), False, False)])
def test_tcache_struct_first_chunk_boundary(version, always, often):
    """Up to 2.41 MAYBE_INIT_TCACHE runs at the top of every malloc-family call: the struct comes
    before the call's own chunk.  2.42 allocates it on the first request below
    mp_.tcache_max_bytes (usually the first); 2.43 on the first free."""
    L = layout_for(version, 8)
    assert (L.tcache_heads_main_heap, L.tcache_often_heads_main_heap) == (always, often)


# -- 2.42 / 2.43: no fastbins, 16 slots ---------------------------------------------------------

@pytest.mark.parametrize("version,fastbins,fill", [((2, 42), True, 7), ((2, 43), False, 16)])
def test_fastbins_and_fill_boundary(version, fastbins, fill):
    L = layout_for(version, 8)
    assert (L.features.fastbins, L.features.tcache_fill, L.nfastbins) == (fastbins, fill, 10 if fastbins else 0)
    assert L.malloc_state.has("fastbinsY") is fastbins
