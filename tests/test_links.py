"""links.py: bin lists followed together, a run of blocks at a time, on memory images laid out
here word by word.  Each list's expected order is the order the test links its nodes in, and
each loop's cut is where the test put the first node met twice."""

from __future__ import annotations

import random
from typing import List, Tuple

import pytest

from gdb_heap.links import (BOUND, LOOP, UNALIGNED, UNREADABLE, Trail, doubly, follow, follow_doubly, follow_singly,
                             singly)
from gdb_heap.memory import BLOCK, ImageMemory, Reader
from tests.images import FlatImage

BASE = 0x5555_0000_0000  # block-aligned
H = 16  # CHUNK_HDR_SZ on x86-64
MASK = 15  # MALLOC_ALIGNMENT - 1


def singly_image(lists: List[List[int]], size: int, safe: bool = False, skew: int = H,
                 span: int = 8 << 20) -> Tuple[FlatImage, List[Trail]]:
    """Fast-bin-like lists: each node a chunk of `size` whose fd (at chunk + 16) links the next
    chunk (skew 16) or the next user pointer (skew 0); the last links 0."""
    image = FlatImage(BASE, span)
    trails = []
    for chunks in lists:
        for k, chunk in enumerate(chunks):
            nxt = chunks[k + 1] + H - skew if k + 1 < len(chunks) else 0
            mem = chunk + H
            stored = (mem >> 12) ^ nxt if safe else nxt  # PROTECT_PTR, of NULL too
            image.put(chunk + 8, size | 1, stored)
        trails.append(Trail(chunks[0] + H if chunks else 0, 0, 1 << 20, skew))
    return image, trails


def test_lists_running_down_the_heap_cost_a_few_reads():
    # Three lists interleaved, each running down 6 MiB: 3 x 2000 links.
    lists = [[BASE + (6 << 20) - 0x1000 * (3 * k + j + 1) for k in range(500)] for j in range(3)]
    image, trails = singly_image(lists, 0x30)
    reader = image.reader()
    follow_singly(reader, trails, H, MASK, False)
    for chunks, trail in zip(lists, trails):
        assert list(trail.chunks) == chunks
        assert list(trail.sizes) == [0x30] * len(chunks)
        assert trail.stop is None and trail.at == 0
    reads = reader.memory.reads  # type: ignore[attr-defined]
    # 6 MiB in runs of 16, 32 and 64 blocks (1, 2 and 4 MiB); runs reaching below the image
    # fail and are halved (64 -> 32 at 3 MiB, 64 -> 32 -> 16 at 1 MiB): 7 reads, not 1500.
    assert reads == 7


def test_lists_in_random_order_give_every_link_in_order():
    rng = random.Random(7)
    slots = rng.sample(range(1, 2000), 900)
    lists = [[BASE + 0x1000 * s for s in slots[j::3]] for j in range(3)]
    image, trails = singly_image(lists, 0x40, safe=True)
    follow_singly(image.reader(), trails, H, MASK, True)
    assert [list(t.chunks) for t in trails] == lists
    assert all(t.stop is None for t in trails)


def test_random_lists_do_not_read_more_than_link_by_link():
    # Each link in a block of its own, in random order: runs must give way to single reads.
    rng = random.Random(3)
    chunks = [BASE + BLOCK * s + 0x100 for s in rng.sample(range(120), 120)]
    image, trails = singly_image([chunks], 0x50)
    reader = image.reader()
    follow_singly(reader, trails, H, MASK, False)
    assert list(trails[0].chunks) == chunks
    assert reader.memory.reads <= 2 * len(chunks)  # type: ignore[attr-defined]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 64, 65, 100])
@pytest.mark.parametrize("back", [0, 1, "last"])
def test_a_singly_linked_loop_is_cut_at_the_first_node_met_twice(k, back):
    # k distinct chunks, the last linking back to chunk `back` (0, 1 or itself).
    chunks = [BASE + 0x20000 + 0x40 * i for i in range(k)]
    target = k - 1 if back == "last" else min(back, k - 1)
    image, trails = singly_image([chunks], 0x30)
    image.put(chunks[-1] + 16, chunks[target])  # fd: the chunk (skew 16)
    follow_singly(image.reader(), trails, H, MASK, False)
    t = trails[0]
    assert (t.stop, list(t.chunks), t.at) == (LOOP, chunks, chunks[target] + H)
    assert len(t.sizes) == k


@pytest.mark.parametrize("k", [1, 2, 5, 8, 17, 64])
def test_a_doubly_linked_loop_is_cut_at_the_first_chunk_met_twice(k):
    header = BASE + 0x100
    chunks = [BASE + 0x30000 + 0x100 * i for i in range(k)]
    image = FlatImage(BASE, 1 << 20)
    for i, c in enumerate(chunks):
        image.put(c + 8, 0x100 | 1, chunks[i + 1] if i + 1 < k else chunks[0], chunks[i - 1] if i else header)
    trail = Trail(chunks[0], header, 1 << 20)
    follow_doubly(image.reader(), [trail])
    assert (trail.stop, list(trail.chunks), trail.at) == (LOOP, chunks, chunks[0])
    assert list(trail.bks) == [header] + chunks[:-1]


def test_the_bound_against_a_loop_singly_looks_for_the_loop_first():
    # 10 chunks, the 10th linking back to the first, bound 10: at the 11th node glibc's list
    # (and a set of nodes) meets the first again before the bound is looked at.
    chunks = [BASE + 0x20000 + 0x40 * i for i in range(10)]
    image, trails = singly_image([chunks], 0x30)
    image.put(chunks[-1] + 16, chunks[0])
    trails[0].bound = 10
    follow_singly(image.reader(), trails, H, MASK, False)
    assert (trails[0].stop, len(list(trails[0].chunks))) == (LOOP, 10)


def test_the_bound_against_a_loop_doubly_looks_at_the_bound_first():
    header = BASE + 0x100
    chunks = [BASE + 0x30000 + 0x100 * i for i in range(10)]
    image = FlatImage(BASE, 1 << 20)
    for i, c in enumerate(chunks):
        image.put(c + 8, 0x100 | 1, chunks[(i + 1) % 10], chunks[i - 1] if i else header)
    short = Trail(chunks[0], header, 10)
    follow_doubly(image.reader(), [short])
    assert (short.stop, len(short.chunks), short.at) == (BOUND, 10, chunks[0])
    longer = Trail(chunks[0], header, 11)
    follow_doubly(image.reader(), [longer])
    assert (longer.stop, len(longer.chunks)) == (LOOP, 10)


def test_a_list_longer_than_its_bound_stops_there():
    chunks = [BASE + 0x20000 + 0x40 * i for i in range(50)]
    image, trails = singly_image([chunks], 0x30)
    trails[0].bound = 20
    follow_singly(image.reader(), trails, H, MASK, False)
    assert (trails[0].stop, list(trails[0].chunks), trails[0].at) == (BOUND, chunks[:20], chunks[20] + H)


def test_unaligned_and_unreadable_links_stop_their_list_only():
    a = [BASE + 0x20000 + 0x40 * i for i in range(5)]
    b = [BASE + 0x40000 + 0x40 * i for i in range(5)]
    c = [BASE + 0x60000 + 0x40 * i for i in range(5)]
    image, trails = singly_image([a, b, c], 0x30, span=1 << 20)
    image.put(a[-1] + 16, a[-1] + 0x48)  # unaligned
    image.put(b[-1] + 16, BASE + (2 << 20))  # past the image
    follow_singly(image.reader(), trails, H, MASK, False)
    assert [(t.stop, list(t.chunks)) for t in trails] == [(UNALIGNED, a), (UNREADABLE, b), (None, c)]
    assert trails[0].at == a[-1] + 0x48 + H and trails[1].at == BASE + (2 << 20) + H


def test_words_across_a_block_boundary_and_a_misaligned_chunk_are_read_alone():
    header = BASE + 0x100
    straddling = BASE + BLOCK - 0x10  # size at BLOCK - 8, fd and bk in the next block
    misaligned = BASE + 0x2_0003
    last = BASE + 0x3_0000
    image = FlatImage(BASE, 1 << 20)
    image.put(straddling + 8, 0x410, misaligned, header)
    image.put(misaligned + 8, 0x420, last, straddling)
    image.put(last + 8, 0x430, header, misaligned)
    trail = Trail(straddling, header, 100)
    follow_doubly(image.reader(), [trail])
    assert (trail.stop, trail.at) == (None, header)
    assert list(trail.chunks) == [straddling, misaligned, last]
    assert list(trail.sizes) == [0x410, 0x420, 0x430] and list(trail.bks) == [header, straddling, misaligned]


@pytest.mark.parametrize("cache", [True, False])
def test_a_small_cache_or_none_gives_the_same_lists(cache):
    lists = [[BASE + (5 << 20) - 0x800 * (2 * k + j + 1) for k in range(1000)] for j in range(2)]
    image, trails = singly_image(lists, 0x30)
    reader = image.reader(cache=cache)
    reader.cache_blocks = 3  # most runs' blocks are kept only until the next run
    follow_singly(reader, trails, H, MASK, False)
    assert [list(t.chunks) for t in trails] == lists
    if not cache:  # link by link: one read each
        assert reader.memory.reads == 2000  # type: ignore[attr-defined]


def test_tcache_links_are_user_pointers_and_safe_linked():
    chunks = [BASE + 0x20000 + 0x50 * i for i in range(7)]
    image, trails = singly_image([chunks], 0x50, safe=True, skew=0)
    follow_singly(image.reader(), trails, H, MASK, True)
    assert list(trails[0].chunks) == chunks and trails[0].stop is None


def test_an_image_in_two_parts_reads_each_part_in_runs():
    # The lists cross from one mapping to another with a gap between: a run reaching into the
    # gap is not readable in one read, so that link is read alone and the walk goes on.
    low, high = BASE, BASE + (16 << 20)
    lo_chunks = [low + (1 << 20) - 0x400 * (k + 1) for k in range(100)]
    hi_chunks = [high + 0x400 * 100 - 0x400 * k for k in range(100)]
    chunks = hi_chunks + lo_chunks
    parts = {low: bytearray(1 << 20), high: bytearray(1 << 20)}
    for k, c in enumerate(chunks):
        base = low if c < high else high
        nxt = chunks[k + 1] if k + 1 < len(chunks) else 0
        parts[base][c + 8 - base:c + 24 - base] = (0x31).to_bytes(8, "little") + nxt.to_bytes(8, "little")
    reader = Reader(ImageMemory({a: bytes(b) for a, b in parts.items()}), 8)
    trail = Trail(chunks[0] + H, 0, 1000, H)
    follow_singly(reader, [trail], H, MASK, False)
    assert (list(trail.chunks), trail.stop) == (chunks, None)


def test_lists_of_two_kinds_share_each_run():
    # A fast-bin-like list and a bin's doubly linked list, both running down the same 3 MiB:
    # followed together they read it once (runs of 16 then 32 blocks), not once per kind.
    header = BASE + 0x100
    image = FlatImage(BASE, 4 << 20)
    fast = [BASE + (3 << 20) - 0x1000 * k for k in range(1, 700)]
    small = [c + 0x800 for c in fast]
    for k, c in enumerate(fast):
        image.put(c + 8, 0x31, fast[k + 1] if k + 1 < len(fast) else 0)
    for k, c in enumerate(small):
        image.put(c + 8, 0x101, small[k + 1] if k + 1 < len(small) else header, small[k - 1] if k else header)
    reader = image.reader()
    one, two = Trail(fast[0] + H, 0, 1 << 20, H), Trail(small[0], header, 1 << 20)
    follow(reader, [(singly(reader, H, MASK, False), [one]), (doubly(reader), [two])])
    assert (list(one.chunks), list(two.chunks), list(two.bks)) == (fast, small, [header] + small[:-1])
    assert reader.memory.reads == 2  # type: ignore[attr-defined]


def test_a_wide_list_records_nextsizes_where_readable_and_goes_on_where_not():
    # Large-bin chunks: fd_nextsize and bk_nextsize after fd and bk; the last chunk's lie past
    # the end of memory, so only its first three words are read: the list still ends well,
    # and its nextsizes are one pair short (the bin reader then leaves them to heap check).
    header = BASE + 0x100
    size = 1 << 20
    image = FlatImage(BASE, size)
    a, b = BASE + 0x1000, BASE + size - 0x20  # b's words from b + 8: size, fd, bk; then the end
    image.put(a + 8, 0x411, b, header, 0x1111, 0x2222)
    image.put(b + 8, 0x401, header, a)
    trail = Trail(a, header, 100)
    follow_doubly(image.reader(), [trail], wide=True)
    assert (trail.stop, trail.at, list(trail.chunks), list(trail.sizes)) == (None, header, [a, b], [0x410, 0x400])
    assert list(trail.nextsizes) == [0x1111, 0x2222]


# -- read link by link (no cache: a running process between steps) ---------------------------

@pytest.mark.parametrize("k", [1, 3, 8])
def test_uncached_a_singly_linked_loop_is_cut_and_found_within_twice_its_length(k):
    # k chunks, the last linking back to the first: read link by link, a loop must still be cut
    # where the first node comes again, after at most 2k reads (Brent), not at the bound.
    chunks = [BASE + 0x20000 + 0x40 * i for i in range(k)]
    image, trails = singly_image([chunks], 0x30)
    image.put(chunks[-1] + 16, chunks[0])
    reader = image.reader(cache=False)
    follow_singly(reader, trails, H, MASK, False)
    t = trails[0]
    assert (t.stop, list(t.chunks), t.at) == (LOOP, chunks, chunks[0] + H)
    assert reader.memory.reads <= 2 * k  # type: ignore[attr-defined]


def test_uncached_a_doubly_linked_loop_is_cut_and_found_within_twice_its_length():
    header = BASE + 0x100
    chunks = [BASE + 0x30000 + 0x100 * i for i in range(3)]
    image = FlatImage(BASE, 1 << 20)
    for i, c in enumerate(chunks):
        image.put(c + 8, 0x101, chunks[(i + 1) % 3], chunks[i - 1] if i else header)
    reader = image.reader(cache=False)
    trail = Trail(chunks[0], header, 1 << 20)
    follow_doubly(reader, [trail])
    assert (trail.stop, list(trail.chunks), trail.at) == (LOOP, chunks, chunks[0])
    assert reader.memory.reads <= 6  # type: ignore[attr-defined]


def test_uncached_unaligned_and_bound_stop_their_list_with_no_read_past_the_stop():
    a = [BASE + 0x20000 + 0x40 * i for i in range(5)]
    b = [BASE + 0x40000 + 0x40 * i for i in range(30)]
    image, trails = singly_image([a, b], 0x30, span=1 << 20)
    image.put(a[-1] + 16, a[-1] + 0x48)  # unaligned
    trails[1].bound = 20
    reader = image.reader(cache=False)
    follow_singly(reader, trails, H, MASK, False)
    assert [(t.stop, list(t.chunks)) for t in trails] == [(UNALIGNED, a), (BOUND, b[:20])]
    assert trails[0].at == a[-1] + 0x48 + H and trails[1].at == b[20] + H
    assert reader.memory.reads == 5 + 20  # type: ignore[attr-defined]


# -- follow()'s bookkeeping ---------------------------------------------------------------------

def test_an_empty_list_before_others_does_not_stop_them():
    a = [BASE + 0x20000 + 0x40 * i for i in range(4)]
    b = [BASE + 0x30000 + 0x40 * i for i in range(3)]
    image, trails = singly_image([[], a, [], b], 0x30)
    follow_singly(image.reader(), trails, H, MASK, False)
    assert [(t.stop, t.at, list(t.chunks)) for t in trails] == [(None, 0, []), (None, 0, a), (None, 0, []),
                                                              (None, 0, b)]


def test_a_list_of_chunks_0x20_apart_running_down_is_no_loop():
    # The smallest chunks freed from the top down: each node's user pointer is the previous
    # chunk's address minus 0x10; nothing there is met twice.
    chunks = [BASE + 0x20000 - 0x20 * i for i in range(40)]
    image, trails = singly_image([chunks], 0x20)
    follow_singly(image.reader(), trails, H, MASK, False)
    assert (trails[0].stop, list(trails[0].chunks), trails[0].at) == (None, chunks, 0)


def test_a_doubly_linked_list_records_no_nextsizes_unless_wide():
    header = BASE + 0x100
    a, b = BASE + 0x1000, BASE + 0x2000
    image = FlatImage(BASE, 1 << 20)
    image.put(a + 8, 0x411, b, header, 0x1111, 0x2222)
    image.put(b + 8, 0x401, header, a, 0x3333, 0x4444)
    trail = Trail(a, header, 100)
    follow_doubly(image.reader(), [trail])
    assert (list(trail.chunks), list(trail.bks), list(trail.nextsizes)) == ([a, b], [header, a], [])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_wide_loop_keeps_the_nextsizes_of_the_chunks_kept(k):
    # k large-bin chunks, the last linking back to the first: each kept chunk keeps its own
    # pair (fd_nextsize, bk_nextsize) = (0x1000 + i, 0x2000 + i), no more.
    header = BASE + 0x100
    chunks = [BASE + 0x30000 + 0x100 * i for i in range(k)]
    image = FlatImage(BASE, 1 << 20)
    for i, c in enumerate(chunks):
        image.put(c + 8, 0x401, chunks[(i + 1) % k], chunks[i - 1] if i else header, 0x1000 + i, 0x2000 + i)
    trail = Trail(chunks[0], header, 1 << 20)
    follow_doubly(image.reader(), [trail], wide=True)
    assert (trail.stop, list(trail.chunks)) == (LOOP, chunks)
    assert list(trail.nextsizes) == [w for i in range(k) for w in (0x1000 + i, 0x2000 + i)]


def test_a_wide_chunk_at_the_end_of_a_cached_block_gives_its_own_words():
    # As in the test above it, the last chunk's nextsizes lie past the end of memory, but its
    # block is in the cache already: its three readable words come from the block, at its place.
    header = BASE + 0x100
    size = 1 << 20
    image = FlatImage(BASE, size)
    a, b = BASE + 0x1000, BASE + size - 0x20
    image.put(a + 8, 0x411, b, header, 0x1111, 0x2222)
    image.put(b + 8, 0x401, header, a)
    reader = image.reader()
    assert reader.word(b + 8) == 0x401  # the last block now cached
    trail = Trail(a, header, 100)
    follow_doubly(reader, [trail], wide=True)
    assert (trail.stop, trail.at, list(trail.chunks), list(trail.sizes)) == (None, header, [a, b], [0x410, 0x400])
    assert list(trail.bks) == [header, a] and list(trail.nextsizes) == [0x1111, 0x2222]


def test_a_singly_node_whose_link_is_the_last_word_of_memory_is_read():
    # The last node's size and fd are the image's last two words: nothing after them is needed.
    size = (1 << 20) + 8
    a, b = BASE + 0x1000, BASE + (1 << 20) - 0x10  # b's fd at b + 16 = BASE + 1 MiB: the last word
    for cache in (True, False):
        image, trails = singly_image([[a, b]], 0x30, span=size)
        reader = image.reader(cache=cache)
        follow_singly(reader, trails, H, MASK, False)
        assert (trails[0].stop, list(trails[0].chunks), list(trails[0].sizes)) == (None, [a, b], [0x30, 0x30])
        if not cache:  # one read per link: just its two words, no try at more
            assert reader.memory.reads == 2  # type: ignore[attr-defined]


def test_runs_come_back_after_a_stretch_of_random_links():
    # 100 links each in a block of its own in random order (runs do not pay: single reads),
    # then 3000 links running down 3 MiB: read in runs again, not one read each.
    rng = random.Random(5)
    scattered = [BASE + (8 << 20) + BLOCK * s + 0x100 for s in rng.sample(range(100), 100)]
    dense = [BASE + (3 << 20) - 0x400 * (k + 1) for k in range(3000)]
    image, trails = singly_image([scattered + dense], 0x30, span=16 << 20)
    reader = image.reader()
    follow_singly(reader, trails, H, MASK, False)
    assert list(trails[0].chunks) == scattered + dense and trails[0].stop is None
    assert reader.memory.reads < 100 + 3000 // 4  # type: ignore[attr-defined]


def test_a_scattered_list_does_not_shrink_the_runs_of_the_others():
    # Three lists running down 6 MiB (7 reads alone, see above) and a fourth of 200 links in
    # random order over the same 6 MiB (a large bin, sorted by size): the fourth is read link
    # by link once a run has served it one link, and the others keep their big runs.
    rng = random.Random(11)
    lists = [[BASE + (6 << 20) - 0x1000 * (3 * k + j + 1) for k in range(500)] for j in range(3)]
    lists.append([BASE + 0x1000 * s + 0x800 for s in rng.sample(range(1, 1536), 200)])
    image, trails = singly_image(lists, 0x30)
    reader = image.reader()
    follow_singly(reader, trails, H, MASK, False)
    assert [list(t.chunks) for t in trails] == lists and all(t.stop is None for t in trails)
    assert trails[3].scattered and not any(t.scattered for t in trails[:3])
    assert reader.memory.reads <= 7 + 200  # type: ignore[attr-defined]


@pytest.mark.parametrize("steady", [False, True])
def test_a_steady_list_is_never_judged_scattered(steady):
    # Beside three lists running down 6 MiB, a fourth running down with links 1 MiB apart (a
    # large bin's size group): each run serves it one link, which makes an ordinary list
    # scattered (read link by link when it comes first) but not a steady one (size_groups').
    lists = [[BASE + (6 << 20) - 0x1000 * (3 * k + j + 1) for k in range(500)] for j in range(3)]
    lists.append([BASE + (6 << 20) - 0x800 - (1 << 20) * k for k in range(6)])
    image, trails = singly_image(lists, 0x30)
    trails[3].steady = steady
    follow_singly(image.reader(), trails, H, MASK, False)
    assert [list(t.chunks) for t in trails] == lists
    assert trails[3].scattered is not steady


def test_a_chunk_whose_words_end_a_block_is_read_from_the_run():
    # 256 chunks 0x1000 apart running down 1 MiB from its last 0x20 bytes: every 16th one's size,
    # fd and bk are the last three words of a block.  One run of 16 blocks (1 MiB) serves all.
    header = BASE + 0x100
    image = FlatImage(BASE, 1 << 20)
    chunks = [BASE + (1 << 20) - 0x20 - 0x1000 * k for k in range(256)]
    assert sum((c + 0x20) % BLOCK == 0 for c in chunks) == 16
    for k, c in enumerate(chunks):
        image.put(c + 8, 0x101, chunks[k + 1] if k + 1 < len(chunks) else header, chunks[k - 1] if k else header)
    reader = image.reader()
    trail = Trail(chunks[0], header, 1 << 20)
    follow_doubly(reader, [trail])
    assert (trail.stop, trail.at, list(trail.chunks)) == (None, header, chunks)
    assert list(trail.bks) == [header] + chunks[:-1]
    assert reader.memory.reads == 1  # type: ignore[attr-defined]


def test_a_lone_chunk_across_two_blocks_costs_one_read():
    # Its size in one block, its fd and bk in the next, and nothing else wanted: its own words
    # are read, no run (which would reach below the image: failed reads).
    header = BASE + 0x100
    straddling = BASE + BLOCK - 0x10
    image = FlatImage(BASE, 1 << 20)
    image.put(straddling + 8, 0x211, header, header)
    reader = image.reader()
    trail = Trail(straddling, header, 100)
    follow_doubly(reader, [trail])
    assert (trail.stop, trail.at, list(trail.chunks), list(trail.sizes)) == (None, header, [straddling], [0x210])
    assert reader.memory.reads == 1  # type: ignore[attr-defined]


def test_a_run_resumes_every_list_waiting_in_it_down_to_its_lowest_block():
    # One list starts in the top block of 1 MiB, another in the bottom one: the first run (16
    # blocks) holds both lists whole, so they cost that one read.
    a = [BASE + (1 << 20) - 0x100 - 0x40 * i for i in range(5)]
    b = [BASE + 0x100 + 0x40 * i for i in range(5)]
    image, trails = singly_image([a, b], 0x30, span=1 << 20)
    reader = image.reader()
    follow_singly(reader, trails, H, MASK, False)
    assert [(t.stop, list(t.chunks)) for t in trails] == [(None, a), (None, b)]
    assert reader.memory.reads == 1  # type: ignore[attr-defined]
