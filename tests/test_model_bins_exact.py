"""The bin walks (model.read_regular_bins, read_fastbins, read_tcache, links.follow) on
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
from gdb_heap.memory import BLOCK
from gdb_heap.model import MallocPar, MallocState
from tests.images import FlatImage

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


class Image(FlatImage):
    """A heap's bytes at HEAP, word by word (x86_64): one whole cache block unless said."""

    def __init__(self, size: int = BLOCK) -> None:
        super().__init__(HEAP, size)

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
    # the unsorted bin's size: MINSIZE, the smallest it holds
    assert (chain.kind, chain.index, chain.size, chain.count, chain.chunks) == ("unsorted", 1, 0x20, 2, [a, b])
    assert list(chain.sizes) == [0x500, 0x430]
    assert chain.problems == []


@pytest.mark.parametrize("size, what", [
    (0x0, "no chunk's"), (0x10, "no chunk's"),  # size <= CHUNK_HDR_SZ
    (0x21008, "more than the arena's system_mem 0x21000"),  # size > av->system_mem
    (0x8000000000000000, "more than the arena's system_mem 0x21000"),  # the top bit: kept whole
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
    img = Image()
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


def test_regular_chunks_sixteen_bytes_apart_read_with_the_cache_off():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x110  # a's fd and bk are b's prev_size and size
    img.put(a + 8, 0x101, b, header(1))
    img.put(b + 16, header(1), a)
    [chain] = regular(img, arena({1: (a, b)}), cache=False)
    assert chain.chunks == [a, b]
    assert list(chain.sizes) == [0x100, header(1) & ~7]


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("offset", [0x104, 0x101])  # not word aligned; odd
def test_a_chunk_at_an_unaligned_address_is_read_where_it_is(cache, offset):
    img = Image()
    a, u = HEAP + 0x200, HEAP + offset  # a's fd is damaged: u is not even word aligned
    img.put(a + 8, 0x101, u, header(1))
    img.put(HEAP + 0x100, 0x10100000000, 0x1, 0)  # the aligned words around u's differ from u's
    struct.pack_into("<QQQ", img.buf, offset + 8, 0x101, header(1), a)
    [chain] = regular(img, arena({1: (a, u)}), cache)  # u after a: the block is cached by then
    assert (chain.chunks, list(chain.sizes), chain.problems) == ([a, u], [0x100, 0x100], [])


def test_read_bins_passes_single_thread_on():
    img = Image()
    c = HEAP + 0x600
    fast_chain(img, [(c, 0x31)], HEAP + 0x708)
    state = arena(fastbins=[0, c])
    _, problems = model.read_bins(img.reader(), L36, state, None, mp(0), single_thread=False)
    assert [p.glibc_abort for p in problems] == [REMOVE]


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


# -- fast bins and the tcache: singly linked, safe-linked from 2.32 --------------------------------

FAST_SLOT = ARENA + 0x10  # &av->fastbinsY[0]: after mutex, flags, have_fastchunks and padding
VICTIM2 = "malloc(): unaligned fastbin chunk detected 2"
STASH3 = "malloc(): unaligned fastbin chunk detected 3"
REMOVE = "malloc(): unaligned fastbin chunk detected"
FAST_SIZE = "malloc(): memory corruption (fast)"
CONSOLIDATE = "malloc_consolidate(): invalid chunk size"
TCACHE_UNALIGNED = "malloc(): unaligned tcache chunk detected"


def protect(pos: int, ptr: int) -> int:
    """PROTECT_PTR: the link word at `pos` holding `ptr`."""
    return (pos >> 12) ^ ptr


def fast_chain(img: Image, chunks: Sequence[Tuple[int, int]], last: int = 0) -> int:
    """Fast bin chunks (address, size field) in list order, the last one's fd `last`: the head."""
    for k, (c, size) in enumerate(chunks):
        nxt = chunks[k + 1][0] if k + 1 < len(chunks) else last
        img.put(c + 8, size, protect(c + 16, nxt))
    return chunks[0][0]


def fast(img: Image, head: int, i: int = 1, cache: bool = True, system_mem: int = 0x21000,
         **kw) -> model.BinChain:
    state = arena(fastbins=[0] * i + [head], system_mem=system_mem)
    [chain] = model.read_fastbins(img.reader(cache), L36, state, **kw)
    return chain


@pytest.mark.parametrize("cache", [True, False])
def test_a_healthy_fast_bin(cache):
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    chain = fast(img, fast_chain(img, [(a, 0x31), (b, 0x31)]), cache=cache)
    assert (chain.kind, chain.index, chain.size, chain.count, chain.chunks) == ("fast", 1, 0x30, 2, [a, b])
    assert chain.sizes == array("Q", [0x30, 0x30])
    assert chain.problems == []


@pytest.mark.parametrize("single_thread, fill, position, abort", [
    (True, 0, 0, VICTIM2), (False, 0, 0, VICTIM2),  # the head: checked as the victim
    (True, 0, 1, VICTIM2), (True, 7, 1, STASH3), (True, 1, 2, VICTIM2),
    (False, 0, 1, REMOVE), (False, 0, 2, REMOVE),  # REMOVE_FB reads the taken chunk's fd
])
def test_an_unaligned_fast_link_and_what_malloc_prints(single_thread, fill, position, abort):
    img = Image()
    bad = HEAP + 0x408  # 8 past 16-byte alignment
    good = [(HEAP + 0x100 * (k + 1), 0x31) for k in range(position)]
    head = fast_chain(img, good, bad) if good else bad
    chain = fast(img, head, fill=fill, single_thread=single_thread)
    member = good[-1][0] if good else FAST_SLOT + 8
    assert chain.chunks == [c for c, _ in good]
    assert [(p.address, p.message, p.glibc_abort, p.pointers) for p in chain.problems] == [
        (member, f"fast[1]: {member:#x} links to {bad:#x}, which is not aligned; the chain is cut here", abort,
         (("to ", bad),))]


def test_fast_bins_default_to_no_tcache_and_a_single_thread():
    img = Image()
    a = HEAP + 0x100
    chain = fast(img, fast_chain(img, [(a, 0x31)], HEAP + 0x408))
    assert [p.glibc_abort for p in chain.problems] == [VICTIM2]


def test_a_fast_link_looping_back():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    chain = fast(img, fast_chain(img, [(a, 0x31), (b, 0x31)], a))
    assert chain.chunks == [a, b]
    assert [(p.address, p.message, p.glibc_abort, p.pointers) for p in chain.problems] == [
        (b, f"fast[1]: {b:#x} links back to {a:#x}, a loop ({a:#x} is in the list twice: freed twice, or a link "
            "overwritten); the chain is cut here", None, (("to ", a),))]


@pytest.mark.parametrize("cache", [True, False])
def test_a_fast_link_to_unreadable_memory(cache):
    img = Image()
    a, gone = HEAP + 0x100, HEAP + 0x100000
    chain = fast(img, fast_chain(img, [(a, 0x31)], gone), cache=cache)
    assert chain.chunks == [a]
    assert [(p.address, p.message, p.glibc_abort, p.pointers) for p in chain.problems] == [
        (a, f"fast[1]: {a:#x} links to {gone:#x}, which is not readable; the chain is cut here", None,
         (("to ", gone),))]


@pytest.mark.parametrize("got, abort, consolidate", [
    (0x40, FAST_SIZE, CONSOLIDATE),  # fastbin_index(0x40) = 2, not 1
    (0x38, None, None),  # fastbin_index(0x38) = (0x38 >> 4) - 2 = 1: both checks pass
])
def test_a_fast_victim_of_the_wrong_size(got, abort, consolidate):
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    chain = fast(img, fast_chain(img, [(a, 0x31), (b, got | 1)]))  # fill 0: b is a victim too
    assert chain.sizes == array("Q", [0x30, got])
    assert [(p.address, p.message, p.glibc_abort, p.other_paths) for p in chain.problems] == [
        (b, f"fast[1]: chunk {b:#x} has size {got:#x}, not 0x30", abort,
         (("malloc_consolidate", consolidate),) if consolidate else ())]


@pytest.mark.parametrize("got, abort", [
    # 2.42's stash check: csize2tidx(size) = (size - MINSIZE + MALLOC_ALIGNMENT - 1) / MALLOC_ALIGNMENT
    (0x20, "malloc(): chunk size mismatch in fastbin"),  # (0x00 + 15) / 16 = 0, not tidx 1
    (0x28, None),  # (0x08 + 15) / 16 = 1
    (0x38, "malloc(): chunk size mismatch in fastbin"),  # (0x18 + 15) / 16 = 2
])
def test_a_stashed_fast_chunk_of_the_wrong_size_in_2_42(got, abort):
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    fast_chain(img, [(a, 0x31), (b, got | 1)])
    state = arena(fastbins=[0, a])
    [chain] = model.read_fastbins(img.reader(), L42, state, fill=7)  # b is stashed after the victim a
    assert [(p.address, p.glibc_abort) for p in chain.problems] == [(b, abort)]


@pytest.mark.parametrize("system_mem, longest", [(0, 64), (0x1010, 129)])
def test_a_fast_bin_is_at_most_system_mem_over_minsize_plus_one_chunks(system_mem, longest):
    img = Image()
    chunks = [(HEAP + 0x100 + 0x20 * k, 0x21) for k in range(longest + 1)]
    chain = fast(img, fast_chain(img, chunks[:longest]), i=0, system_mem=system_mem)
    assert (chain.count, chain.problems) == (longest, [])
    chain = fast(img, fast_chain(img, chunks), i=0, system_mem=system_mem)
    assert chain.count == longest
    last = chunks[longest - 1][0]
    assert [(p.address, p.message, p.pointers) for p in chain.problems] == [
        (last, f"fast[0]: longer than it can be ({longest} chunks); the chain is cut here",
         (("to ", chunks[longest][0]),))]


def test_a_size_field_with_the_top_bit_set_is_kept_whole():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x200
    chain = fast(img, fast_chain(img, [(a, 0x31), (b, 0x8000000000000031)]))
    assert chain.sizes == array("Q", [0x30, 0x8000000000000030])
    t = HEAP + 0x300
    img = tcache_image({1: [t]}, {1: 1})
    img.put(t + 8, 0x8000000000000031)
    [chain] = model.read_tcache(img.reader(), L36, T, mp())
    assert chain.sizes == array("Q", [0x8000000000000030])


def test_fast_chunks_sixteen_bytes_apart_read_with_the_cache_off():
    img = Image()
    a, b = HEAP + 0x100, HEAP + 0x110  # b's size is a's second user word
    chain = fast(img, fast_chain(img, [(a, 0x21), (b, 0x21)]), i=0, cache=False)
    assert (chain.chunks, chain.problems) == ([a, b], [])


def test_a_fast_link_sixteen_bytes_back_read_with_the_cache_off():
    img = Image()
    a, b = HEAP + 0x110, HEAP + 0x100  # b's fd is a's prev_size
    img.put(a + 8, 0x21, protect(a + 16, b))
    img.put(b + 8, 0x31, protect(b + 16, 0))
    chain = fast(img, a, i=0, cache=False)
    assert (chain.chunks, list(chain.sizes)) == ([a, b], [0x20, 0x30])


def test_a_fast_chunk_across_a_cache_block_boundary_is_read_whole():
    img = Image(BLOCK + 0x1000)
    a, b = HEAP + 0x100, HEAP + BLOCK - 16  # b's size word is the block's last
    chain = fast(img, fast_chain(img, [(a, 0x31), (b, 0x31)]))
    assert (chain.chunks, chain.problems) == ([a, b], [])


def test_a_fast_chunk_whose_fd_ends_the_readable_memory_is_read():
    img = Image(0x208)
    a = HEAP + 0x208 - 24  # its fd is the image's last word
    chain = fast(img, fast_chain(img, [(a, 0x31)]), cache=False)
    assert (chain.chunks, chain.problems) == ([a], [])


# The tcache: tcache_perthread_struct's user pointer at T, counts then entries (user pointers).
T = HEAP + 0x10


def tcache_image(entries: Dict[int, Sequence[int]], counts: Dict[int, int], layout=L36,
                 last: Optional[Dict[int, int]] = None) -> Image:
    """entries: bin -> the chunks in list order (their user pointers are +16); the last one's
    next `last[bin]` (a user pointer; default 0)."""
    img = Image()
    _, count_size, _ = layout.tcache_perthread.fields[layout.counts_field]
    entries_at = T + layout.tcache_perthread.offset("entries")
    for i, n in counts.items():
        struct.pack_into("<H", img.buf, T - HEAP + count_size * i, n)
    for i, chunks in entries.items():
        mems = [c + 16 for c in chunks] + [(last or {}).get(i, 0)]
        img.put(entries_at + 8 * i, mems[0] if chunks else mems[-1])
        for k, c in enumerate(chunks):
            img.put(c + 8, layout.tcache_bin_size(i) | 1, protect(mems[k], mems[k + 1]))
    return img


def mp(count: int = 7) -> MallocPar:
    return MallocPar(ARENA + 0x1000, 0x20000, 0, 0x20000, 0, 0, HEAP, 64, 0x408, count)


def test_a_tcache_count_that_is_not_the_chain():
    a = HEAP + 0x300
    img = tcache_image({2: [a]}, {2: 2, 5: 1})
    chains = model.read_tcache(img.reader(), L36, T, mp())
    assert [(c.kind, c.index, c.size, c.count, c.chunks) for c in chains] == [
        ("tcache", 2, 0x40, 2, [a]), ("tcache", 5, 0x70, 1, [])]
    assert [(p.address, p.message) for c in chains for p in c.problems] == [
        (a, "tcache[2]: the tcache counts 2 chunks but the chain holds 1"),
        (T, "tcache[5]: the tcache counts 1 chunks but the chain holds 0")]


@pytest.mark.parametrize("bad", [HEAP + 0x301, HEAP + 0x308])  # any low bit of MALLOC_ALIGNMENT
def test_an_unaligned_tcache_head(bad):
    img = tcache_image({}, {3: 1})
    img.put(T + 128 + 3 * 8, bad)
    [chain] = model.read_tcache(img.reader(), L36, T, mp())
    # The head lives in the tcache_perthread_struct's own chunk, T - 16.
    assert [(p.address, p.message, p.glibc_abort) for p in chain.problems] == [
        (T - 16, f"tcache[3]: {T - 16:#x} links to {bad - 16:#x}, which is not aligned; the chain is cut here",
         TCACHE_UNALIGNED),
        (T, "tcache[3]: the tcache counts 1 chunks but the chain holds 0", None)]


@pytest.mark.parametrize("free_slots, count", [(9, None), (7, None), (6, 1), (0, 7)])
def test_2_42_counts_free_slots(free_slots, count):
    # 2.42's num_slots: how many more chunks the bin takes; more than tcache_count is damage (none)
    # tcache_init leaves every bin's num_slots at mp_.tcache_count: all free
    img = tcache_image({}, {**{i: 7 for i in range(76)}, 4: free_slots}, L42)
    chains = model.read_tcache(img.reader(), L42, T, mp())
    assert [(c.index, c.count) for c in chains] == ([] if count is None else [(4, count)])


def test_read_bins_reports_an_unreadable_tcache():
    img = Image()
    gone = HEAP + 0x100000
    chains, problems = model.read_bins(img.reader(), L36, arena(), gone, mp())
    assert chains == []
    assert [p.address for p in problems] == [gone]
    assert problems[0].message.startswith(f"the tcache at {gone:#x} is not readable (")


def test_read_bins_stashes_only_with_a_tcache():
    img = tcache_image({}, {})
    a, b = HEAP + 0x400, HEAP + 0x500
    fdbk = img.ring(4, [(a, 0x41), (b, 0x41)])
    img.put(a + 24, HEAP + 0x900)  # a is 1 from the tail
    _, problems = model.read_bins(img.reader(), L36, arena({4: fdbk}), None, mp(1))
    assert [p.glibc_abort for p in problems] == [SMALLBIN]  # no tcache: a is the next victim
    _, problems = model.read_bins(img.reader(), L36, arena({4: fdbk}), T, mp(1))
    assert [p.glibc_abort for p in problems] == [None]  # stashed after b


def test_read_bins_tcache_then_fast_single_thread_by_default():
    a, c = HEAP + 0x300, HEAP + 0x600
    img = tcache_image({0: [a]}, {0: 1})
    fast_chain(img, [(c, 0x31)], HEAP + 0x708)
    chains, problems = model.read_bins(img.reader(), L36, arena(fastbins=[0, c]), T, mp(0))
    assert [(x.kind, x.index, x.chunks) for x in chains] == [("tcache", 0, [a]), ("fast", 1, [c])]
    assert [p.glibc_abort for p in problems] == [VICTIM2]


@pytest.mark.parametrize("position, fill, victim", [
    (0, 0, True), (1, 0, True), (0, 7, True), (1, 7, False), (7, 7, False), (8, 7, True), (16, 7, True),
    (2, 1, True), (3, 1, False),
])
def test_is_victim(position, fill, victim):
    assert model.is_victim(position, fill) is victim


# -- i386: 4-byte words, bins at 0x40 in malloc_state, MALLOC_ALIGNMENT 16 --------------------------

L386 = layout_for((2, 36), 4)
HEAP32, ARENA32 = 0x56560000, 0xF7E19780


def header32(i: int) -> int:
    return ARENA32 + 0x40 + 2 * 4 * (i - 1) - 2 * 4


def state32(bins: Dict[int, Tuple[int, int]], fastbins: Sequence[int] = ()) -> MallocState:
    words: List[int] = []
    for i in range(1, 128):
        words += bins.get(i, (header32(i), header32(i)))
    fast = tuple(fastbins) + (0,) * (11 - len(fastbins))
    return MallocState(ARENA32, 0, 0, fast, HEAP32 + 0x8000, 0, tuple(words), (0,) * 4, ARENA32, 0, 1,
                       0x21000, 0x21000)


@pytest.mark.parametrize("cache", [True, False])
def test_i386_unsorted_and_small_bins(cache):
    img = FlatImage(HEAP32, BLOCK, 4)
    a, b, c = HEAP32 + 0x100, HEAP32 + 0x600, HEAP32 + 0x900
    img.put(a + 4, 0x501, b, header32(1))  # size, fd, bk
    img.put(b + 4, 0x411, header32(1), a)
    img.put(c + 4, 0x21, header32(3), header32(3))  # smallbin_index: (0x20 >> 4) + SMALLBIN_CORRECTION
    chains = model.read_regular_bins(img.reader(cache), L386, state32({1: (a, b), 3: (c, c)}))
    assert [(x.kind, x.index, x.chunks, list(x.sizes), x.problems) for x in chains] == [
        ("unsorted", 1, [a, b], [0x500, 0x410], []), ("small", 3, [c], [0x20], [])]


@pytest.mark.parametrize("cache", [True, False])
def test_i386_fast_bin(cache):
    img = FlatImage(HEAP32, BLOCK, 4)
    a, b = HEAP32 + 0x108, HEAP32 + 0x208  # user pointers (+8, where the fd lives) 16-aligned
    img.put(a + 4, 0x11, protect(a + 8, b))
    img.put(b + 4, 0x11, protect(b + 8, 0))
    [chain] = model.read_fastbins(img.reader(cache), L386, state32({}, [a]))
    assert (chain.kind, chain.index, chain.size, chain.chunks, list(chain.sizes), chain.problems) == (
        "fast", 0, 0x10, [a, b], [0x10, 0x10], [])


@pytest.mark.parametrize("cache", [True, False])
def test_a_large_bin_carries_its_chunks_nextsize_words_and_a_small_bin_none(cache):
    # fd_nextsize and bk_nextsize (the words after bk) as heap check reads them: a ring of the
    # first chunk of each size; the second chunk of a size has NULLs.  Small bins keep none.
    img = Image()
    a, b, c = HEAP + 0x100, HEAP + 0x600, HEAP + 0xB00
    s1, s2 = HEAP + 0x2000, HEAP + 0x2200
    img.put(s1 + 8, 0x101, header(16), header(16))
    fdbk = img.ring(64, [(a, 0x421), (b, 0x421), (c, 0x411)])
    img.put(a + 32, c, c)  # a: the first 0x420, its ring neighbours both c
    img.put(b + 32, 0, 0)
    img.put(c + 32, a, a)
    img.put(s2 + 8, 0x101, header(16), header(16))
    chains = regular(img, arena({16: (s1, s1), 64: fdbk}), cache)
    small, large = chains
    assert (small.kind, small.chunks, small.nextsizes) == ("small", [s1], None)
    assert (large.kind, large.chunks) == ("large", [a, b, c])
    assert list(large.nextsizes or []) == [c, c, 0, 0, a, a]
