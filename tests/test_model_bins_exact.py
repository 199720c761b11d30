"""The bin walks (model.read_regular_bins, read_fastbins, read_tcache, walk_singly_linked) on
tiny images laid out word by word here, each expected value written by hand from malloc.c:
bin_at, the unsorted loop's size check, the large bins' index ranges (largebin_index_64),
fastbin_index, csize2tidx, safe-linking (PROTECT_PTR), and glibc's abort texts as glibc prints
them.  Both sides of every boundary; reads with the cache on and off (a running process)."""

from __future__ import annotations

import struct
from array import array
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from gdb_heap import model
from gdb_heap.layouts import layout_for
from gdb_heap.memory import BLOCK, ImageMemory, Reader
from gdb_heap.model import MallocPar, MallocState, Problem

L36 = layout_for((2, 36), 8)
L42 = layout_for((2, 42), 8)
ARENA = 0x7FFFF7E19C80
# offsetof(struct malloc_state, bins) on x86_64: mutex, flags, have_fastchunks (+4 padding) = 16,
# fastbinsY[10] = 80, top and last_remainder = 16.
BINS = 0x70
HEAP = 0x555555560000  # a 64 KiB block boundary: the cache's blocks start here
SMALLBIN = "malloc(): smallbin double linked list corrupted"
INVALID_UNSORTED = "malloc(): invalid size (unsorted)"


def header(i: int) -> int:
    """bin_at(av, i): &bins[2 * (i - 1)] less offsetof(struct malloc_chunk, fd)."""
    return ARENA + BINS + 2 * 8 * (i - 1) - 2 * 8


class Image:
    """A heap's bytes at HEAP, word by word (x86_64)."""

    def __init__(self, size: int = 0x3000) -> None:
        self.buf = bytearray(size)

    def put(self, address: int, *words: int) -> None:
        for k, w in enumerate(words):
            struct.pack_into("<Q", self.buf, address - HEAP + 8 * k, w)

    def reader(self, cache: bool = True) -> Reader:
        return Reader(ImageMemory({HEAP: bytes(self.buf)}), 8, cache=cache)

    def ring(self, i: int, chunks: Sequence[Tuple[int, int]]) -> Tuple[int, int]:
        """A well-linked bin i of these (chunk, size field)s in fd order: its (fd, bk) words."""
        addrs = [c for c, _ in chunks]
        for k, (c, size) in enumerate(chunks):
            fd = addrs[k + 1] if k + 1 < len(addrs) else header(i)
            bk = addrs[k - 1] if k else header(i)
            self.put(c + 8, size, fd, bk)
        return addrs[0], addrs[-1]


def arena(bins: Optional[Dict[int, Tuple[int, int]]] = None, system_mem: int = 0x21000,
          fastbins: Sequence[int] = ()) -> MallocState:
    words: List[int] = []
    for i in range(1, 128):
        words += (bins or {}).get(i, (header(i), header(i)))
    fast = tuple(fastbins) + (0,) * (10 - len(fastbins))
    return MallocState(ARENA, 0, 0, fast, HEAP + 0x2000, 0, tuple(words), (0,) * 4, ARENA, 0, 1,
                       system_mem, system_mem)


def regular(img: Image, state: MallocState, cache: bool = True, **kw) -> List[model.BinChain]:
    return model.read_regular_bins(img.reader(cache), L36, state, **kw)


def texts(chain: model.BinChain) -> List[Tuple[int, str, Optional[str]]]:
    return [(p.address, p.message, p.glibc_abort) for p in chain.problems]


# -- unsorted, small and large bins ----------------------------------------------------------------

@pytest.mark.parametrize("cache", [True, False])
def test_a_healthy_unsorted_bin_in_fd_order(cache):
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x600
    fdbk = img.ring(1, [(a, 0x501), (b, 0x431)])
    [chain] = regular(img, arena({1: fdbk}), cache)
    assert (chain.kind, chain.index, chain.size, chain.count, chain.chunks) == ("unsorted", 1, 0x20, 2, [a, b])  # its size: MINSIZE, the smallest it holds
    assert list(chain.sizes) == [0x500, 0x430]
    assert chain.problems == []


@pytest.mark.parametrize("size, what", [
    (0x0, "no chunk's"), (0x10, "no chunk's"),  # size <= CHUNK_HDR_SZ
    (0x21008, "more than the arena's system_mem 0x21000"),  # size > av->system_mem
])
def test_unsorted_chunk_size_outside_the_unsorted_loops_check(size, what):
    img = Image()
    a = HEAP + 0x100
    [chain] = regular(img, arena({1: img.ring(1, [(a, size | 1)])}))
    assert texts(chain) == [(a, f"unsorted: chunk {a:#x} has size {size:#x}, {what}", INVALID_UNSORTED)]


@pytest.mark.parametrize("size", [0x18, 0x20, 0x21000])  # CHUNK_HDR_SZ < size <= system_mem
def test_unsorted_chunk_size_inside_the_unsorted_loops_check(size):
    img = Image()
    [chain] = regular(img, arena({1: img.ring(1, [(HEAP + 0x100, size)])}))
    assert chain.problems == []


def test_before_2_29_the_unsorted_size_check_aborts_with_memory_corruption():
    img = Image()
    a = HEAP + 0x100
    state = arena({1: img.ring(1, [(a, 0x11)])})
    [chain] = model.read_regular_bins(img.reader(), layout_for((2, 27), 8), state)
    assert texts(chain) == [(a, f"unsorted: chunk {a:#x} has size 0x10, no chunk's", "malloc(): memory corruption")]


def test_a_tiny_system_mem_says_more_than_system_mem_from_just_past_chunk_hdr_sz():
    img = Image()
    a = HEAP + 0x100
    [chain] = regular(img, arena({1: img.ring(1, [(a, 0x18)])}, system_mem=0x10))
    assert texts(chain) == [(a, f"unsorted: chunk {a:#x} has size 0x18, more than the arena's system_mem 0x10",
                             INVALID_UNSORTED)]


def test_only_the_unsorted_bin_is_checked_against_system_mem():
    img = Image()
    [chain] = regular(img, arena({2: img.ring(2, [(HEAP + 0x100, 0x21)])}, system_mem=0x10))
    assert (chain.kind, chain.index, chain.problems) == ("small", 2, [])


@pytest.mark.parametrize("i, size, belongs", [
    # largebin_index_64: (sz >> 18) <= 2 ? 124 + (sz >> 18) : 126
    (125, 0x40000, None), (125, 0x7FFF0, None), (125, 0x80000, 126),
    (126, 0x80000, None), (126, 0xFFFFFFF0, None), (126, 0x7FFF0, 125),
    (2, 0x20, None), (2, 0x30, 3), (3, 0x20, 2),
])
def test_a_bins_size_range_both_ends(i, size, belongs):
    img = Image()
    a = HEAP + 0x100
    [chain] = regular(img, arena({i: img.ring(i, [(a, size | 1)])}))
    kind = "small" if i < 64 else "large"
    assert (chain.kind, chain.index, chain.chunks) == (kind, i, [a])
    expected = [] if belongs is None else [
        (a, f"{kind}[{i}]: chunk {a:#x} has size {size:#x}, which belongs in bin {belongs}", None)]
    assert texts(chain) == expected


def test_a_bin_whose_fd_is_zero_is_malloc_before_init():
    img = Image()
    assert regular(img, arena({5: (0, 0), 70: (0, 0)})) == []


@pytest.mark.parametrize("cache", [True, False])
def test_a_chunk_with_a_bad_bk_names_what_it_should_be(cache):
    img = Image()
    a, b, c = HEAP + 0x100, HEAP + 0x200, HEAP + 0x300
    fdbk = img.ring(4, [(a, 0x41), (b, 0x41), (c, 0x41)])
    img.put(a + 24, HEAP + 0x900)  # a's bk: should be the bin's header
    img.put(c + 24, HEAP + 0x980)  # c's bk: should be b
    [chain] = regular(img, arena({4: fdbk}), cache)
    # The small bin is taken from its tail: c is malloc's first victim, a (2 from the tail) the third.
    assert texts(chain) == [
        (a, f"small[4]: chunk {a:#x} has bk {HEAP + 0x900:#x}, expected {header(4):#x}", SMALLBIN),
        (c, f"small[4]: chunk {c:#x} has bk {HEAP + 0x980:#x}, expected {b:#x}", SMALLBIN)]
    assert [p.pointers for p in chain.problems] == [
        (("bk ", HEAP + 0x900), ("expected ", header(4))), (("bk ", HEAP + 0x980), ("expected ", b))]
    assert [p.other_paths for p in chain.problems] == [(), ()]


def test_a_small_bin_victim_is_every_fill_plus_one_th_from_the_tail():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    fdbk = img.ring(4, [(a, 0x41), (b, 0x41)])
    img.put(a + 24, HEAP + 0x900)  # a is 1 from the tail
    # no tcache (fill 0): each malloc takes one victim, a is the second
    [chain] = regular(img, arena({4: fdbk}))
    assert [p.glibc_abort for p in chain.problems] == [SMALLBIN]
    # a tcache of 1: the victim b, then a is stashed unchecked
    [chain] = regular(img, arena({4: fdbk}), fill=1)
    assert [p.glibc_abort for p in chain.problems] == [None]


def test_a_cut_chain_does_not_know_where_malloc_starts():
    img = Image()
    a = HEAP + 0x100
    img.put(a + 8, 0x41, HEAP + 0x10000, HEAP + 0x900)  # fd not readable, bk bad
    [chain] = regular(img, arena({4: (a, a)}))  # the bin's bk is a: as if whole
    assert texts(chain) == [
        (a, f"small[4]: fd {HEAP + 0x10000:#x} is not readable; the chain is cut here", None),
        (a, f"small[4]: chunk {a:#x} has bk {HEAP + 0x900:#x}, expected {header(4):#x}", None)]
    assert chain.problems[0].pointers == (("fd ", HEAP + 0x10000),)


def test_a_whole_chain_with_a_bin_bk_elsewhere_does_not_know_where_malloc_starts():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    img.ring(4, [(a, 0x41), (b, 0x41)])
    img.put(b + 24, HEAP + 0x900)
    [chain] = regular(img, arena({4: (a, a)}))  # the bin's bk is a, not the last chunk b
    assert [p.glibc_abort for p in chain.problems] == [None]


def test_a_large_bins_bad_bk_is_unlinks_and_sortings():
    img = Image()
    a, b, c = HEAP + 0x100, HEAP + 0x600, HEAP + 0xB00
    fdbk = img.ring(64, [(a, 0x421), (b, 0x421), (c, 0x411)])
    for x in (a, b, c):
        img.put(x + 24, HEAP + 0x2000)
    [chain] = regular(img, arena({64: fdbk}))
    sorting = (model.SORTING_INTO_LARGE_BIN, "malloc(): largebin double linked list corrupted (bk)")
    assert [(p.address, p.glibc_abort, p.other_paths) for p in chain.problems] == [
        (a, "corrupted double-linked list", (sorting,)),
        (b, "corrupted double-linked list", (sorting,)),
        (c, "corrupted double-linked list", (sorting,))]


@pytest.mark.parametrize("sizes, k, sorts", [
    ([0x500, 0x500, 0x500], 0, True),  # the first of its size
    ([0x500, 0x500, 0x500], 1, True),  # the second of its size
    ([0x500, 0x500, 0x500], 2, False),  # the third: never fwd
    ([0x500, 0x500, 0x500, 0x480], 3, True),
    ([0x500, 0x400, 0x400, 0x400], 3, False),
    ([0x500, 0x400, 0x400, 0x400], 2, True),
    ([0x480, 0x500, 0x480], 2, True),  # (unsorted by damage) differs from the one before
])
def test_sorting_checks_the_first_and_second_of_each_size(sizes, k, sorts):
    expected = ((model.SORTING_INTO_LARGE_BIN, "malloc(): largebin double linked list corrupted (bk)"),)
    assert model.sorting_bk_paths(L36, "large", sizes, k) == (expected if sorts else ())


def _long_chain(img: Image, i: int, n: int, size: int) -> Tuple[Tuple[int, int], List[int]]:
    chunks = [(HEAP + 0x100 + 0x20 * k, size) for k in range(n)]
    return img.ring(i, chunks), [c for c, _ in chunks]


@pytest.mark.parametrize("system_mem, longest", [(0, 64), (0x7E0, 64), (0x1010, 129)])
def test_a_regular_bin_is_at_most_system_mem_over_minsize_plus_one_chunks(system_mem, longest):
    # bound = max(64, system_mem / MINSIZE + 1): 0x1010 / 0x20 = 128
    img = Image(0x3000)
    fdbk, chunks = _long_chain(img, 2, longest, 0x21)
    [chain] = regular(img, arena({2: fdbk}, system_mem))
    assert (chain.count, chain.problems) == (longest, [])
    fdbk, chunks = _long_chain(img, 2, longest + 1, 0x21)
    [chain] = regular(img, arena({2: fdbk}, system_mem))
    assert chain.count == longest
    assert texts(chain) == [(chunks[longest - 1], "small[2]: longer than the arena can hold; cut here", None)]


def test_a_chunk_across_a_cache_block_boundary_is_read_whole():
    img = Image(BLOCK + 0x1000)
    a, b = HEAP + 0x100, HEAP + BLOCK - 24  # b's size word is the block's last but one
    fdbk = img.ring(1, [(a, 0x101), (b, 0x101)])
    [chain] = regular(img, arena({1: fdbk}))
    assert (chain.chunks, chain.problems) == ([a, b], [])


def test_a_chunk_whose_bk_ends_the_readable_memory_is_read():
    img = Image(0x200)
    a = HEAP + 0x200 - 32  # its bk is the image's last word
    [chain] = regular(img, arena({1: img.ring(1, [(a, 0x101)])}), cache=False)
    assert (chain.chunks, chain.problems) == ([a], [])


def test_the_last_bin_is_read():
    img = Image()
    a = HEAP + 0x100
    [chain] = regular(img, arena({126: img.ring(126, [(a, 0x100001)])}))
    assert (chain.kind, chain.index, chain.chunks) == ("large", 126, [a])
