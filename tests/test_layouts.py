"""layouts.py against the published numbers in shared/reference/glibc-internals.md (sections 2-8)."""

from __future__ import annotations

from typing import Dict, Tuple

import pytest

from gdb_heap.layouts import layout_for
from tests import handbins as hb

V_2_27_42 = [(2, 27), (2, 29), (2, 30), (2, 31), (2, 32), (2, 34), (2, 35), (2, 36), (2, 37), (2, 41), (2, 42)]

# -- section 4: struct malloc_state -------------------------------------------------------------

# version -> (top, last_remainder, bins, binmap, next, next_free, attached_threads, system_mem,
#             max_system_mem, sizeof, unsorted header offset)
MALLOC_STATE_X86_64 = {
    (2, 26): (0x58, 0x60, 0x68, 0x858, 0x868, 0x870, 0x878, 0x880, 0x888, 0x890, 0x58),
    **{v: (0x60, 0x68, 0x70, 0x860, 0x870, 0x878, 0x880, 0x888, 0x890, 0x898, 0x60) for v in V_2_27_42},
    (2, 43): (0x8, 0x10, 0x18, 0x808, 0x818, 0x820, 0x828, 0x830, 0x838, 0x840, 0x8),
}


@pytest.mark.parametrize("version", sorted(MALLOC_STATE_X86_64))
def test_malloc_state_x86_64(version):
    L = layout_for(version, 8)
    s = L.malloc_state
    (top, last_rem, bins, binmap, nxt, next_free, attached, system_mem, max_sm, size,
     unsorted) = MALLOC_STATE_X86_64[version]
    assert s.offset("mutex") == 0 and s.offset("flags") == 4
    assert s.offset("top") == top
    assert s.offset("last_remainder") == last_rem
    assert s.offset("bins") == bins
    assert s.offset("binmap") == binmap
    assert s.offset("next") == nxt
    assert s.offset("next_free") == next_free
    assert s.offset("attached_threads") == attached
    assert s.offset("system_mem") == system_mem
    assert s.offset("max_system_mem") == max_sm
    assert s.size == size
    # bin_at(1) = &bins[0] - 2*S
    assert s.offset("bins") - 2 * 8 == unsorted
    if (2, 27) <= version < (2, 43):
        assert s.offset("have_fastchunks") == 0x8 and s.offset("fastbinsY") == 0x10
    elif version == (2, 26):
        assert not s.has("have_fastchunks") and s.offset("fastbinsY") == 0x8
    else:
        assert not s.has("have_fastchunks") and not s.has("fastbinsY")


# i386: version -> (top, bins, next, system_mem, sizeof, unsorted header)
MALLOC_STATE_I386 = {
    (2, 26): (0x34, 0x3C, None, None, 0x458, 0x34),
    **{v: (0x38, 0x40, 0x448, 0x454, 0x45C, 0x38) for v in V_2_27_42},
    (2, 43): (0x8, 0x10, None, None, 0x42C, None),
}


@pytest.mark.parametrize("version", sorted(MALLOC_STATE_I386))
def test_malloc_state_i386(version):
    s = layout_for(version, 4).malloc_state
    top, bins, nxt, system_mem, size, unsorted = MALLOC_STATE_I386[version]
    assert s.offset("top") == top
    assert s.offset("bins") == bins
    assert s.size == size
    if nxt is not None:
        assert s.offset("next") == nxt
        assert s.offset("system_mem") == system_mem
    if unsorted is not None:
        assert s.offset("bins") - 2 * 4 == unsorted


def test_malloc_state_i386_2_27_to_2_42_every_field():
    for version in V_2_27_42:
        s = layout_for(version, 4).malloc_state
        assert (s.offset("have_fastchunks"), s.offset("fastbinsY"), s.offset("top"), s.offset("last_remainder"),
                s.offset("bins"), s.offset("binmap"), s.offset("next"), s.offset("next_free"),
                s.offset("attached_threads"), s.offset("system_mem"), s.offset("max_system_mem"), s.size) == (
            0x8, 0xC, 0x38, 0x3C, 0x40, 0x438, 0x448, 0x44C, 0x450, 0x454, 0x458, 0x45C)


def test_i386_pre_tcache_malloc_state():
    """2.23-2.25 on i386 (NFASTBINS 10, MALLOC_ALIGNMENT 8)."""
    for version in ((2, 23), (2, 24), (2, 25)):
        L = layout_for(version, 4)
        s = L.malloc_state
        assert L.malloc_alignment == 8
        assert L.nfastbins == 10
        assert (s.offset("top"), s.offset("bins"), s.offset("next"), s.offset("system_mem"), s.size) == (
            0x30, 0x38, 0x440, 0x44C, 0x454)


def test_nfastbins():
    assert layout_for((2, 36), 8).nfastbins == 10
    assert layout_for((2, 26), 4).nfastbins == 11
    assert layout_for((2, 36), 4).nfastbins == 11
    assert layout_for((2, 43), 8).nfastbins == 0


# -- section 8: struct malloc_par ----------------------------------------------------------------

# x86-64: version -> (n_mmaps, mmapped_mem, sbrk_base, tcache_bins, tcache_max_bytes, tcache_count, sizeof)
MP_X86_64 = {
    **{v: (0x28, 0x38, 0x48, 0x50, 0x58, 0x60, 0x70) for v in [(2, 26), (2, 27), (2, 30), (2, 31), (2, 34)]},
    **{v: (0x3C, 0x50, 0x60, 0x68, 0x70, 0x78, 0x88) for v in [(2, 35), (2, 36), (2, 37), (2, 41), (2, 42)]},
    (2, 43): (0x44, 0x58, 0x68, 0x70, 0x78, 0x80, 0x90),
    # 2.44 dropped tcache_unsorted_limit (ptype/o struct malloc_par, Debian's 2.44-3 debug info)
    (2, 44): (0x44, 0x58, 0x68, 0x70, 0x78, 0x80, 0x88),
}


@pytest.mark.parametrize("version", sorted(MP_X86_64))
def test_malloc_par_x86_64(version):
    p = layout_for(version, 8).malloc_par
    n_mmaps, mmapped_mem, sbrk_base, tb, tmax, tcount, size = MP_X86_64[version]
    assert p.offset("n_mmaps") == n_mmaps
    assert p.offset("mmapped_mem") == mmapped_mem
    assert p.offset("sbrk_base") == sbrk_base
    bins_field = "tcache_small_bins" if version >= (2, 42) else "tcache_bins"  # renamed in 2.42
    assert (p.offset(bins_field), p.offset("tcache_max_bytes"), p.offset("tcache_count")) == (tb, tmax, tcount)
    assert p.size == size


def test_malloc_par_x86_64_pre_tcache():
    p = layout_for((2, 24), 8).malloc_par
    assert (p.offset("n_mmaps"), p.offset("mmapped_mem"), p.offset("sbrk_base"), p.size) == (0x28, 0x38, 0x48, 0x50)
    assert not p.has("tcache_count")


@pytest.mark.parametrize("version,sbrk_base", [((2, 24), 0x2C), ((2, 26), 0x2C), ((2, 34), 0x2C),
                                               ((2, 35), 0x38), ((2, 42), 0x38), ((2, 44), 0x3C)])
def test_malloc_par_i386_sbrk_base(version, sbrk_base):
    p = layout_for(version, 4).malloc_par
    assert p.offset("sbrk_base") == sbrk_base
    if p.has("tcache_count"):  # "tcache fields follow it" (tcache_bins renamed tcache_small_bins in 2.42)
        bins_field = "tcache_small_bins" if p.has("tcache_small_bins") else "tcache_bins"
        assert p.offset(bins_field) == sbrk_base + 4
        assert p.offset("tcache_max_bytes") == sbrk_base + 8
        assert p.offset("tcache_count") == sbrk_base + 12


# -- section 6: tcache_perthread_struct ------------------------------------------------------------

# version -> (counts field, elem size, nbins, entries x86-64, entries i386, sizeof x86-64, chunk, sizeof i386, chunk)
TCACHE = {
    (2, 26): ("counts", 1, 64, 64, 64, 576, 0x250, 320, 0x150),
    (2, 29): ("counts", 1, 64, 64, 64, 576, 0x250, 320, 0x150),
    (2, 30): ("counts", 2, 64, 128, 128, 640, 0x290, 384, 0x190),
    (2, 36): ("counts", 2, 64, 128, 128, 640, 0x290, 384, 0x190),
    (2, 41): ("counts", 2, 64, 128, 128, 640, 0x290, 384, 0x190),
    (2, 42): ("num_slots", 2, 76, 152, 152, 760, 0x300, 456, 0x1D0),
    (2, 43): ("num_slots", 2, 76, 152, 152, 760, 0x300, 456, 0x1D0),
}


@pytest.mark.parametrize("version", sorted(TCACHE))
def test_tcache_perthread_struct(version):
    counts, esize, nbins, e64, e32, size64, chunk64, size32, chunk32 = TCACHE[version]
    for word, entries, size, chunk in ((8, e64, size64, chunk64), (4, e32, size32, chunk32)):
        L = layout_for(version, word)
        t = L.tcache_perthread
        assert t.fields[counts] == (0, esize, nbins)
        assert t.offset("entries") == entries
        assert t.size == size
        assert L.request2size(t.size) == chunk
        assert L.counts_field == counts
        assert L.tcache_bins == nbins


# -- section 5: heap_info ------------------------------------------------------------------------------

@pytest.mark.parametrize("version,word,size", [
    ((2, 26), 8, 0x20), ((2, 34), 8, 0x20), ((2, 35), 8, 0x30), ((2, 42), 8, 0x30),
    ((2, 26), 4, 0x18), ((2, 36), 4, 0x18), ((2, 25), 4, 0x10)])
def test_heap_info_sizeof(version, word, size):
    L = layout_for(version, word)
    assert L.heap_info.size == size
    assert (L.heap_info.size + L.header_size) % L.malloc_alignment == 0


@pytest.mark.parametrize("version,word,first", [
    ((2, 26), 8, 0x8B0), ((2, 27), 8, 0x8C0), ((2, 34), 8, 0x8C0), ((2, 35), 8, 0x8D0), ((2, 42), 8, 0x8D0),
    ((2, 43), 8, 0x870), ((2, 25), 4, 0x468), ((2, 26), 4, 0x478), ((2, 42), 4, 0x478)])
def test_first_chunk_of_a_thread_arena(version, word, first):
    """heap_info + malloc_state, then the first chunk where mem is aligned (section 5)."""
    L = layout_for(version, word)
    pos = L.heap_info.size + L.malloc_state.size
    while (pos + L.header_size) % L.malloc_alignment:
        pos += word
    assert pos == first


# -- section 2: alignment, MINSIZE, request2size -------------------------------------------------------

REQUESTS = [0, 10, 12, 13, 24, 25, 28, 29, 100, 1000, 1024, 1032]
REQUEST_TABLE = {
    "x86-64": ((2, 36), 8, [32, 32, 32, 32, 32, 48, 48, 48, 112, 1008, 1040, 1040]),
    "i386<=2.25": ((2, 25), 4, [16, 16, 16, 24, 32, 32, 32, 40, 104, 1008, 1032, 1040]),
    "i386>=2.26": ((2, 26), 4, [16, 16, 16, 32, 32, 32, 32, 48, 112, 1008, 1040, 1040]),
}


@pytest.mark.parametrize("row", sorted(REQUEST_TABLE))
def test_request2size_table(row):
    version, word, sizes = REQUEST_TABLE[row]
    L = layout_for(version, word)
    assert [L.request2size(n) for n in REQUESTS] == sizes


@pytest.mark.parametrize("version,word,alignment,minsize", [
    ((2, 36), 8, 16, 32), ((2, 25), 4, 8, 16), ((2, 26), 4, 16, 16), ((2, 42), 4, 16, 16)])
def test_alignment_and_minsize(version, word, alignment, minsize):
    L = layout_for(version, word)
    assert L.malloc_alignment == alignment
    assert L.minsize == minsize
    assert L.header_size == 2 * word


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 25), 4), ((2, 36), 4)])
def test_requests_for_is_the_inverse_of_request2size(version, word):
    L = layout_for(version, word)
    table = [L.request2size(n) for n in range(5001)]
    for size in range(0, 1200):
        got = L.requests_for(size)
        exact = [n for n, s in enumerate(table) if s == size]
        if not exact:
            assert got is None, size
            continue
        assert got is not None, size
        low, high = got
        assert (low, high) == (exact[0], exact[-1]), size
        assert all(table[n] == size for n in range(low, high + 1))
        assert exact == list(range(low, high + 1))  # a contiguous range
        if low > 0:
            assert table[low - 1] != size
        assert table[high + 1] != size


# -- section 3: bins ---------------------------------------------------------------------------------

def test_smallbin_index_x86_64():
    L = layout_for((2, 36), 8)
    assert L.smallbin_index(32) == 2 and L.smallbin_index(1008) == 63
    assert all(L.smallbin_index(sz) == sz >> 4 for sz in range(32, 1024, 16))
    assert L.in_smallbin_range(1008) and not L.in_smallbin_range(1024)
    assert L.min_large_size == 1024


def test_smallbin_index_i386():
    L = layout_for((2, 36), 4)
    assert L.smallbin_index(16) == 2 and L.smallbin_index(992) == 63
    assert all(L.smallbin_index(sz) == (sz >> 4) + 1 for sz in range(16, 1008, 16))
    assert L.in_smallbin_range(992) and not L.in_smallbin_range(1008)
    old = layout_for((2, 25), 4)
    assert all(old.smallbin_index(sz) == sz >> 3 for sz in range(16, 512, 8))
    assert old.in_smallbin_range(504) and not old.in_smallbin_range(512)


def _ranges(L, lo, hi, step):
    """bin index -> (smallest, largest) size in [lo, hi) with that index."""
    out: Dict[int, Tuple[int, int]] = {}
    for sz in range(lo, hi, step):
        i = L.largebin_index(sz)
        a, b = out.get(i, (sz, sz))
        out[i] = (min(a, sz), max(b, sz))
    return out


def test_largebin_index_x86_64_ranges():
    L = layout_for((2, 36), 8)
    r = _ranges(L, 1024, 1 << 21, 16)
    for i in range(64, 97):  # 64..96 step 64 B from 1024
        assert r[i] == (1024 + (i - 64) * 64, 1024 + (i - 64) * 64 + 63 - 15)
    assert r[97][0] == 3136
    for i in range(97, 112):  # step 512 from 3136 (bin 97 starts mid-step)
        assert r[i][1] + 16 == r[i + 1][0]
    for i in range(98, 111):
        assert r[i][1] - r[i][0] == 512 - 16
    assert r[112][0] == 10752
    for i in range(113, 120):
        assert r[i][1] - r[i][0] == 4096 - 16
    assert r[120] == (40960, 65535 - 15)
    for i in range(121, 124):
        assert r[i][1] - r[i][0] == 32768 - 16
    assert r[124] == (160 * 1024, 256 * 1024 - 16)
    assert r[125] == (256 * 1024, 512 * 1024 - 16)
    assert r[126][0] == 512 * 1024
    assert L.largebin_index(1 << 40) == 126


def test_largebin_index_i386():
    L = layout_for((2, 36), 4)
    r = _ranges(L, 1008, 1 << 20, 16)
    assert r[64] == (1008, 1008)  # bin 64 holds only size 1008
    assert 95 not in r  # bin 95 unused
    assert r[65][0] == 1024
    old = layout_for((2, 25), 4)  # largebin_index_32: sz>>6 <= 38 -> 56 + (sz>>6)
    assert old.largebin_index(512) == 64
    assert old.largebin_index(38 * 64 + 63) == 94
    assert old.largebin_index(39 * 64) == 91 + (39 * 64 >> 9)


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 36), 4), ((2, 25), 4)])
def test_bin_min_size(version, word):
    L = layout_for(version, word)
    assert L.bin_min_size(1) == L.minsize
    for i in range(2, 64):
        expect = [sz for sz in range(L.minsize, L.min_large_size, L.malloc_alignment) if L.smallbin_index(sz) == i]
        assert L.bin_min_size(i) == expect[0]
    sizes = range(L.min_large_size, 1 << 20, L.malloc_alignment)
    first: Dict[int, int] = {}
    for sz in sizes:
        first.setdefault(L.largebin_index(sz), sz)
    for i in range(64, 126):
        if i in first:
            assert L.bin_min_size(i) == first[i], i
    assert L.bin_min_size(64) == L.min_large_size


def test_fastbin_index():
    L = layout_for((2, 36), 8)
    assert [L.fastbin_index(s) for s in (32, 48, 64, 80, 96, 112, 128, 160)] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert all(L.fastbin_size(L.fastbin_index(s)) == s for s in range(32, 0xB0, 16))
    L4 = layout_for((2, 36), 4)
    assert [L4.fastbin_index(s) for s in (16, 32, 48, 64, 80)] == [0, 2, 4, 6, 8]
    assert all(L4.fastbin_size(L4.fastbin_index(s)) == s for s in range(16, 0x50, 16))
    # unsigned int arithmetic: (8 >> 4) - 2 wraps; the size is cut to 32 bits before the shift
    assert L.fastbin_index(8) == 0xFFFFFFFE and L4.fastbin_index(8) == 0xFFFFFFFF
    assert L.fastbin_index(0x100000020) == 0


@pytest.mark.parametrize("version,word,first,last", [
    ((2, 36), 8, 0x20, 0x410), ((2, 36), 4, 0x10, 0x400), ((2, 27), 8, 0x20, 0x410), ((2, 42), 8, 0x20, 0x410)])
def test_tcache_index_small(version, word, first, last):
    L = layout_for(version, word)
    assert L.tcache_bin_size(0) == first
    assert L.tcache_bin_size(63) == last
    for i in range(64):
        size = first + i * L.malloc_alignment
        assert L.tcache_index(size) == i  # csize2tidx = (size - MINSIZE) / MALLOC_ALIGNMENT
        assert L.tcache_bin_size(i) == size


def test_tcache_index_large_2_42():
    """64 + clz32(MAX_TCACHE_SMALL_SIZE = tidx2csize(63)) - clz32(size)."""
    L = layout_for((2, 42), 8)

    def clz32(x):
        return 32 - x.bit_length()

    for size in (0x420, 0x7F0, 0x800, 0x1000, 0x10000, 0x3FFFF0):
        assert L.tcache_index(size) == 64 + clz32(0x410) - clz32(size)


def test_tcache_max_bytes_request_maps_to_last_small_bin():
    L = layout_for((2, 36), 8)
    assert L.tcache_index(L.request2size(1032)) == 63
    L4 = layout_for((2, 36), 4)
    assert L4.tcache_index(L4.request2size(1020)) == 63


def test_reveal_ptr():
    L = layout_for((2, 36), 8)
    field = 0x55555555A2A0
    target = 0x55555555A2D0
    stored = (field >> 12) ^ target
    assert L.reveal_ptr(field, stored) == target
    assert L.reveal_ptr(field, field >> 12) == 0  # a list end
    old = layout_for((2, 31), 8)
    assert old.reveal_ptr(field, target) == target  # no safe-linking before 2.32
    L4 = layout_for((2, 36), 4)
    assert L4.reveal_ptr(0x5656A010, (0x5656A010 >> 12) ^ 0x5656A030) == 0x5656A030


def test_features_by_version():
    f = layout_for((2, 27), 8).features
    assert f.tcache and not f.safe_linking and f.tcache_counts_type == "char" and not f.tcache_key
    f = layout_for((2, 29), 8).features
    assert f.tcache_key and f.tcache_counts_type == "char"
    f = layout_for((2, 32), 8).features
    assert f.safe_linking and f.tcache_counts_type == "uint16"
    f = layout_for((2, 42), 8).features
    assert f.tcache_free_slots and f.fastbins and f.tcache_fill == 7
    f = layout_for((2, 43), 8).features
    assert not f.fastbins and f.tcache_fill == 16


@pytest.mark.parametrize("version,word", [((2, 36), 8), ((2, 36), 4), ((2, 42), 8), ((2, 42), 4), ((2, 43), 8)])
def test_bins_against_the_hand_table(version, word):
    """Every chunk size up to 1 MiB (and a few beyond) lands in the bin tests/handbins.py's
    tables, worked out by hand from malloc.c's macros, say."""
    L = layout_for(version, word)
    assert (L.minsize, L.min_large_size) == (hb.MINSIZE[word], hb.MIN_LARGE_SIZE[word])
    for size in list(range(hb.MINSIZE[word], 1 << 20, 16)) + [0xBFFF0, 0xC0000, 1 << 24, 1 << 30]:
        assert L.bin_index(size) == hb.bin_index(size, word), hex(size)
    for i in range(2, 64):
        assert L.bin_min_size(i) == hb.smallbin_size(i, word)
    for i, start in hb.large_bin_starts(word).items():
        assert L.bin_min_size(i) == start, i
    if L.features.fastbins:
        for size in range(hb.MINSIZE[word], 0x81 if word == 8 else 0x41, 16):
            assert L.fastbin_index(size) == hb.fastbin_index(size, word)
            assert L.fastbin_size(hb.fastbin_index(size, word)) == size
    for i in range(L.tcache_bins):
        assert L.tcache_bin_size(i) == hb.tcache_size(i, word), i
    edges = [e + d for e in hb.LARGE_TCACHE_START[word].values() for d in (-16, 0, 16)]
    for size in list(range(hb.MINSIZE[word], 0x2000, 16)) + edges + [0x3FFFF0]:
        if hb.tcache_index(size, word) < L.tcache_bins:
            assert L.tcache_index(size) == hb.tcache_index(size, word), hex(size)
    assert L.tcache_chunk_size == hb.tcache_struct_chunk(version, word)
