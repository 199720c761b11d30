"""A large bin followed as its size groups (links.size_groups, join_groups, through
model.read_regular_bins): the same chain as following the bin's fd links one by one, in far
fewer reads when the groups run down the heap, and the same chain again when damage breaks
the groups apart.

The bins are laid out here as glibc's sorting leaves them (malloc.c, _int_malloc: a chunk of a
size the bin holds already goes in second, after that size's first chunk; a new size goes in
by size, with fd_nextsize and bk_nextsize linking the first chunks of each size in a ring).
Each expected chain comes from a few lines below that read the image's words by fd, with a set
of the chunks met: no code of gdb_heap's."""

from __future__ import annotations

import random
import struct
from typing import List, Optional, Tuple

import pytest

from gdb_heap import model
from gdb_heap.layouts import layout_for
from tests.test_model_bins_exact import HEAP, Image, arena, header

L36 = layout_for((2, 36), 8)
BIN = 64  # sizes 0x400..0x43f on x86-64
SIZES = (0x430, 0x420, 0x410, 0x400)  # the bin's order: largest first
SPAN = 8 << 20
SLOT = 0x1000


def laid_out(per_size: int, rng: random.Random) -> Tuple[Image, List[int], List[int]]:
    """Bin 64 with `per_size` chunks of each size, one to a slot: each size's first chunk at a
    random slot, the others running down from the top of the image.  Returns the image, the
    chunks in fd order and the size groups' first chunks."""
    img = Image(SPAN)
    slots = rng.sample(range(1, SPAN // SLOT - 1), per_size * len(SIZES))
    order: List[int] = []
    heads: List[int] = []
    for k in range(len(SIZES)):
        mine = [HEAP + SLOT * s for s in slots[k * per_size:(k + 1) * per_size]]
        first, others = mine[0], sorted(mine[1:], reverse=True)
        heads.append(first)
        order += [first] + others
    sizes = {c: SIZES[k // per_size] for k, c in enumerate(order)}
    for k, c in enumerate(order):
        fd = order[k + 1] if k + 1 < len(order) else header(BIN)
        bk = order[k - 1] if k else header(BIN)
        junk = rng.getrandbits(64), rng.getrandbits(64)  # a later chunk's nextsize words: stale
        if c in heads:
            g = heads.index(c)
            junk = heads[(g + 1) % len(heads)], heads[g - 1]
        img.put(c + 8, sizes[c] | 1, fd, bk, *junk)
    return img, order, heads


def words_at(img: Image, address: int, count: int) -> Optional[Tuple[int, ...]]:
    off = address - img.base
    if off < 0 or off + 8 * count > len(img.buf):
        return None
    return struct.unpack_from(f"<{count}Q", img.buf, off)


def by_hand(img: Image, first: int, end: int, bound: int) -> Tuple[List[int], List[int], Optional[List[int]], str]:
    """The bin read by fd one chunk at a time: chunks, sizes, nextsizes (None unless every
    chunk's are readable), and how it ended: at `end`, at `bound` chunks, at a chunk met
    before, or at unreadable memory."""
    chunks: List[int] = []
    sizes: List[int] = []
    nextsizes: List[int] = []
    whole = True
    p = first
    while p != end:
        if len(chunks) >= bound:
            return chunks, sizes, nextsizes if whole else None, "bound"
        if p in chunks:
            return chunks, sizes, nextsizes if whole else None, "loop"
        words = words_at(img, p + 8, 5) or words_at(img, p + 8, 3)
        if words is None:
            return chunks, sizes, nextsizes if whole else None, "unreadable"
        chunks.append(p)
        sizes.append(words[0] & ~7)
        if len(words) == 5:
            nextsizes += words[3:]
        else:
            whole = False
        p = words[1]
    return chunks, sizes, nextsizes if whole else None, "end"


def ending(chain: model.BinChain) -> str:
    for p in chain.problems:
        for word, what in (("longer than", "bound"), ("loops back", "loop"), ("not readable", "unreadable")):
            if word in p.message:
                return what
    return "end"


def read(img: Image, first: int, last: int, system_mem: int = SPAN, cache: bool = True) -> model.BinChain:
    [chain] = model.read_regular_bins(img.reader(cache), L36, arena({BIN: (first, last)}, system_mem=system_mem))
    return chain


def test_a_healthy_bin_comes_whole_from_far_fewer_reads():
    img, order, heads = laid_out(300, random.Random(1))
    reader = img.reader()
    [chain] = model.read_regular_bins(reader, L36, arena({BIN: (order[0], order[-1])}, system_mem=SPAN))
    assert (chain.chunks, chain.problems) == (order, [])
    assert list(chain.sizes) == [SIZES[k // 300] for k in range(1200)]
    assert list(chain.nextsizes or [])[:2] == [heads[1], heads[3]]
    # 1200 chunks, each size's jumping back up the heap: followed as one list that is about
    # one read a chunk; as four groups, 4 reads of the groups' first chunks and then the
    # 8 MiB below them in runs of 1 to 4 MiB (one pass down).
    assert reader.memory.reads < 30  # type: ignore[attr-defined]
    uncached = img.reader(cache=False)
    model.read_regular_bins(uncached, L36, arena({BIN: (order[0], order[-1])}, system_mem=SPAN))
    assert uncached.memory.reads >= 1200  # type: ignore[attr-defined]


@pytest.mark.parametrize("cache", [True, False])
def test_a_bin_of_one_size_and_a_bin_of_one_chunk(cache):
    img = Image(1 << 20)
    a, b, c = HEAP + 0x1000, HEAP + 0x9000, HEAP + 0x5000
    img.put(a + 8, 0x411, b, header(BIN), a, a)  # one size: a's nextsizes ring to itself
    img.put(b + 8, 0x411, c, a, 0, 0)
    img.put(c + 8, 0x411, header(BIN), b, 0, 0)
    chain = read(img, a, c, cache=cache)
    assert (chain.chunks, list(chain.sizes), chain.problems) == ([a, b, c], [0x410] * 3, [])
    img2 = Image(1 << 20)
    img2.put(a + 8, 0x421, header(BIN), header(BIN), a, a)
    chain = read(img2, a, a, cache=cache)
    assert (chain.chunks, list(chain.nextsizes or []), chain.problems) == ([a], [a, a], [])


DAMAGE = ("fd to a chunk of the bin", "fd to the header", "fd past memory", "fd misaligned", "fd to a head",
          "nextsize to a chunk", "nextsize to itself", "nextsize past memory", "nextsize to the header",
          "two at once")


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("seed", range(6))
def test_a_damaged_bin_gives_what_following_it_by_fd_gives(damage, seed):
    rng = random.Random(seed)
    img, order, heads = laid_out(12, rng)

    def hurt(what: str) -> None:
        victim = rng.choice(order)
        head = rng.choice(heads)
        if what == "fd to a chunk of the bin":
            img.put(victim + 16, rng.choice(order))
        elif what == "fd to the header":
            img.put(victim + 16, header(BIN))
        elif what == "fd past memory":
            img.put(victim + 16, HEAP + SPAN + 0x100)
        elif what == "fd misaligned":
            img.put(victim + 16, rng.choice(order) + 8)
        elif what == "fd to a head":
            img.put(victim + 16, rng.choice(heads))
        elif what == "nextsize to a chunk":
            img.put(head + 32, rng.choice(order))
        elif what == "nextsize to itself":
            img.put(head + 32, head)
        elif what == "nextsize past memory":
            img.put(head + 32, HEAP + SPAN + 0x100)
        elif what == "nextsize to the header":
            img.put(head + 32, header(BIN))

    if damage == "two at once":
        hurt(rng.choice(DAMAGE[:5]))
        hurt(rng.choice(DAMAGE[5:9]))
    else:
        hurt(damage)
    chunks, sizes, nextsizes, how = by_hand(img, order[0], header(BIN), SPAN // 0x20 + 1)
    for cache in (True, False):
        chain = read(img, order[0], order[-1], cache=cache)
        assert (chain.chunks, list(chain.sizes), ending(chain)) == (chunks, sizes, how)
        assert (list(chain.nextsizes) if chain.nextsizes is not None else None) == \
            (nextsizes if len(nextsizes or []) == 2 * len(chunks) else None)


def test_a_bin_longer_than_its_bound_is_cut_at_the_bound():
    # 4 sizes of 20 chunks and a bound of 64 (system_mem 0x7e0 // MINSIZE 0x20 + 1 is 64):
    # cut after 64 chunks, inside the fourth group, as following by fd cuts it.
    img, order, _ = laid_out(20, random.Random(5))
    chain = read(img, order[0], order[-1], system_mem=0x7E0)
    assert (chain.chunks, ending(chain)) == (order[:64], "bound")


def test_groups_out_of_the_bins_order_still_give_the_fd_order():
    # The skip list rings the heads in an order that is not the bin's (damage): each group
    # then runs into others and the bin is followed whole again, giving the fd order.
    img, order, heads = laid_out(10, random.Random(9))
    ring = [heads[0], heads[2], heads[1], heads[3]]
    for k, h in enumerate(ring):
        img.put(h + 32, ring[(k + 1) % 4], ring[k - 1])
    chain = read(img, order[0], order[-1])
    assert (chain.chunks, chain.problems) == (order, [])


def test_a_bin_of_all_different_sizes_running_down_is_read_in_runs():
    # Bin 126 (sizes from 0xc0000: largebin_index_64 gives 126 once sz >> 18 passes 2) with
    # 200 chunks of 200 sizes, the larger the higher: each size group one chunk, nothing to
    # split.  size_groups gives up after LONE_HEADS (64) single reads and the bin is
    # followed as one list running down 800 KiB, in runs: not 200 reads.
    img = Image(1 << 20)
    chunks = [HEAP + (1 << 20) - 0x1000 * (k + 1) for k in range(200)]
    sizes = [0xC0000 + 0x10 * (200 - k) for k in range(200)]
    for k, c in enumerate(chunks):
        fd = chunks[k + 1] if k + 1 < 200 else header(126)
        bk = chunks[k - 1] if k else header(126)
        img.put(c + 8, sizes[k] | 1, fd, bk, chunks[(k + 1) % 200], chunks[k - 1])
    reader = img.reader()
    [chain] = model.read_regular_bins(reader, L36, arena({126: (chunks[0], chunks[-1])}, system_mem=1 << 24))
    assert (chain.chunks, list(chain.sizes), chain.problems) == (chunks, sizes, [])
    assert 64 <= reader.memory.reads <= 64 + 4  # type: ignore[attr-defined]
