"""_int_free's fast bin and merge steps (paths.py) against glibc 2.36's malloc.c by hand: every
check on both sides of its boundary, the words each step writes, forward and backward merges,
and 2.41's small bins straight from free.  A fast chunk next to top still goes to its fast bin:
glibc is built with TRIM_FASTBINS 0.

x86_64 main_arena (2.36): have_fastchunks at +8 (int), fastbinsY[i] at +0x10 + 8i, top +0x60,
the unsorted bin's header +0x60 (fd at +0x70, bk +0x78), small bin i's header +0x60 + 0x10(i-1),
binmap[0] at +0x860.  Chunks: size at +8, fd +0x10, bk +0x18, fd_nextsize +0x20, bk_nextsize +0x28."""

from __future__ import annotations

from typing import Dict

from gdb_heap import paths
from tests.synthetic import HeapBuilder, Synthetic

FD, BK, FDN, BKN = 0x10, 0x18, 0x20, 0x28


def free(s: Synthetic, mem: int, written: Dict[int, int] | None = None) -> paths.FreeResult:
    heap = s.heap()
    return paths.try_free(heap.reader, paths.context_for(heap), mem, written)


def full_tcache(size: int, version: tuple[int, int] = (2, 36)) -> HeapBuilder:
    b = HeapBuilder(version, 8)
    for _ in range(7):
        b.chunk(size, "tcache")
        b.chunk(0x20)
    return b


def system_mem(s: Synthetic) -> int:
    return s.heap_end - s.sbrk_base


# -- fast bins -------------------------------------------------------------------------------------

def test_a_fast_free_writes_the_link_the_head_and_have_fastchunks():
    b = full_tcache(0x30)
    old = b.chunk(0x30, "fast")
    b.chunk(0x20)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    A = s.arena
    w: Dict[int, int] = {}
    r = free(s, a + 0x10, w)
    assert (r.to, r.bin_index, r.aborts) == ("fast[1]", 1, None)
    assert r.steps[-2:] == ["tcache[1] is full (7 chunks)", "size 0x30 <= global_max_fast: the chunk goes to fast[1]"]
    assert w[a + FD] == ((a + FD) >> 12) ^ old  # PROTECT_PTR (&p->fd, old)
    assert w[A + 0x18] == a  # fastbinsY[1]
    assert w[A + 8] & 0xFFFFFFFF == 1  # have_fastchunks


def test_global_max_fast_is_the_last_fast_size():
    for size, to in ((0x80, "fast[6]"), (0x90, "unsorted")):
        b = full_tcache(size)
        a = b.chunk(size)
        b.chunk(0x20)
        r = free(b.build(), a + 0x10)
        assert r.to == to, hex(size)


def test_a_fast_chunk_next_to_top_goes_to_its_fast_bin():
    b = full_tcache(0x30)
    a = b.chunk(0x30)
    s = b.build()
    assert a + 0x30 == s.top
    r = free(s, a + 0x10)
    assert (r.to, r.top_after, r.merged_with) == ("fast[1]", None, [])


def test_the_fast_next_size_check():
    b = full_tcache(0x30)
    a = b.chunk(0x30)
    g = b.chunk(0x20)
    b.chunk(0x20)
    s = b.build()
    for size_field, aborts in ((0x10, True), (0x11, False), (system_mem(s) | 1, True),
                               ((system_mem(s) - 0x10) | 1, False)):
        s.poke(g + 8, size_field)
        r = free(s, a + 0x10)
        assert (r.aborts == "free(): invalid next size (fast)") == aborts, hex(size_field)
        assert (r.failed_check == "FREE_FAST_NEXT_SIZE") == aborts


def test_fasttop_and_the_old_heads_size_under_the_lock():
    """free() (have_lock 0) never reads the old head's size; realloc's _int_free (av, p, 1) does:
    "invalid fastbin entry (free)" when it is another bin's."""
    b = full_tcache(0x20)
    f = b.chunk(0x20, "fast")
    b.chunk(0x30)
    a = b.chunk(0x40)
    b.chunk(0x30)
    s = b.build()
    heap = s.heap()
    ctx = paths.context_for(heap)
    r = paths.try_realloc(heap.reader, ctx, a + 0x10, 0x18)  # the rest 0x20 freed under the lock
    assert (r.aborts, r.side_effects[-1]) == (None, f"chunk {a + 0x20:#x} freed to fast[0]")  # tcache[0] full
    s.poke(f + 8, 0x91)  # the fast head now claims 0x90
    heap = s.heap()
    r = paths.try_realloc(heap.reader, paths.context_for(heap), a + 0x10, 0x18)
    assert (r.aborts, r.failed_check) == ("invalid fastbin entry (free)", "FREE_FAST_ENTRY")


# -- the merge checks ------------------------------------------------------------------------------

def merge_heap() -> tuple[Synthetic, int, int]:
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    g = b.chunk(0x30)
    b.chunk(0x20)
    return b.build(), a, g


def test_double_free_out_and_prev():
    s, a, g = merge_heap()
    r = free(s, a + 0x10)
    assert r.steps[-2:] == ["top, out, !prev and the next chunk's size pass",
                            f"chunk {a:#x} of size 0x500 goes to unsorted"]
    s.poke(g + 8, 0x30)  # next's PREV_INUSE clear: a is free already
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("double free or corruption (!prev)", "FREE_PREV")
    s.poke(g + 8, 0x31)
    s.poke(a + 8, (s.heap_end - a) | 1)  # next chunk at the heap's end: top + its size exactly
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("double free or corruption (out)", "FREE_OUT")
    s.poke(a + 8, (s.heap_end - a - 0x10) | 1)  # just inside: not "out" (other checks follow)
    assert free(s, a + 0x10).aborts != "double free or corruption (out)"


def test_out_is_not_checked_in_a_noncontiguous_arena():
    s, a, g = merge_heap()
    s.poke(a + 8, (s.heap_end - a) | 1)
    s.poke(s.arena + 4, 2, 4)  # NONCONTIGUOUS_BIT
    assert free(s, a + 0x10).aborts != "double free or corruption (out)"


def test_the_next_size_check():
    """chunksize_nomask (next) <= CHUNK_HDR_SZ with PREV_INUSE set (else !prev comes first):
    0x1 aborts, 0x11 passes; chunksize (next) >= system_mem aborts, 0x10 less passes."""
    s, a, g = merge_heap()
    s.poke(g + 8, 0x1)
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("free(): invalid next size (normal)", "FREE_NEXT_SIZE")
    s.poke(g + 8, 0x11)
    assert free(s, a + 0x10).failed_check != "FREE_NEXT_SIZE"
    s.poke(g + 8, system_mem(s) | 1)
    assert free(s, a + 0x10).failed_check == "FREE_NEXT_SIZE"
    s.poke(g + 8, (system_mem(s) - 0x10) | 1)
    assert free(s, a + 0x10).failed_check != "FREE_NEXT_SIZE"


def test_merge_backwards_checks_the_prev_size():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    u = b.chunk(0x500, "unsorted")
    a = b.chunk(0x500)
    b.chunk(0x20)
    s = b.build()
    w: Dict[int, int] = {}
    r = free(s, a + 0x10, w)
    assert (r.to, r.merged_with) == ("unsorted", [u])
    assert r.side_effects == [f"merged backwards with the free chunk {u:#x} (taken out of its bin)"]
    assert r.steps[-1] == f"chunk {u:#x} of size 0xa00 goes to unsorted"
    assert (w[u + 8], w[u + 0xa00]) == (0xa01, 0xa00)  # head and foot of the merged chunk
    s.poke(a, 0x4f0)  # prev_size no longer the previous chunk's size
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("corrupted size vs. prev_size while consolidating",
                                         "FREE_CONSOLIDATE_PREV_SIZE")


def test_merge_forwards_and_the_in_use_next():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    u = b.chunk(0x500, "unsorted")
    g = b.chunk(0x20)
    s = b.build()
    A = s.arena
    w: Dict[int, int] = {}
    r = free(s, a + 0x10, w)
    assert (r.to, r.merged_with) == ("unsorted", [u])
    assert r.side_effects == [f"merged forwards with the free chunk {u:#x} (taken out of its bin)"]
    assert (w[a + 8], w[a + 0xa00], w[a + FD], w[a + BK]) == (0xa01, 0xa00, A + 0x60, A + 0x60)
    assert (w[a + FDN], w[a + BKN]) == (0, 0)  # a large chunk: its nextsize links cleared
    assert (w[A + 0x70], w[A + 0x78]) == (a, a)
    # next in use: its PREV_INUSE is cleared, nothing merged
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    g = b.chunk(0x30)
    b.chunk(0x20)
    w = {}
    r = free(b.build(), a + 0x10, w)
    assert r.merged_with == [] and w[g + 8] == 0x30 and w[g] == 0x500  # PREV_INUSE cleared, the foot set


def test_a_small_chunk_goes_to_the_unsorted_bin_before_241_and_its_small_bin_from_241():
    for version, to in (((2, 36), "unsorted"), ((2, 41), "small[9]")):
        b = full_tcache(0x90, version)
        a = b.chunk(0x90)
        b.chunk(0x20)
        s = b.build()
        A = s.arena
        w: Dict[int, int] = {}
        r = free(s, a + 0x10, w)
        assert r.to == to, version
        if to == "small[9]":
            h = A + 0x60 + 0x10 * 8  # bin_at (9)
            assert (w[a + FD], w[a + BK], w[h + FD], w[h + BK]) == (h, h, a, a)
            assert w[A + 0x860] & 0xFFFFFFFF == 1 << 9  # mark_bin (9)
            assert a + FDN not in w
        else:
            assert (w[a + FD], w[a + BK]) == (A + 0x60, A + 0x60) and a + FDN not in w


def test_the_bin_insert_checks():
    b = full_tcache(0x90, (2, 41))
    a = b.chunk(0x90)
    b.chunk(0x20)
    s = b.build()
    h = s.arena + 0x60 + 0x10 * 8
    s.poke(h + FD, a + 0x90)  # the small bin's first chunk: a guard whose bk is not the bin
    assert free(s, a + 0x10).failed_check == "SMALLBIN_INSERT_FREE"
    s, a, g = merge_heap()
    s.poke(s.arena + 0x70, g)  # the unsorted bin's first chunk: bk not the bin
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("free(): corrupted unsorted chunks", "UNSORTED_INSERT_FREE")
