"""The checks along glibc's malloc and free paths (paths.py), each on both sides of its
boundary, on synthetic heaps (x86_64, glibc 2.36 unless named), with the messages of malloc.c
written out: the unsorted loop's five checks (2.29+), 2.28's removal check, the small bin's,
the fast bin's victim checks and the stash count, the tcache double-free walk (too many,
unaligned, found, a coincidence; 2.42's retry), unlink_chunk's three checks,
malloc_consolidate's three and its merges, sysmalloc's mmap threshold."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from gdb_heap import paths
from tests.synthetic import TCACHE_KEY, HeapBuilder, Synthetic

FD, BK, FDN, BKN = 0x10, 0x18, 0x20, 0x28


def malloc(s: Synthetic, n: int, written: Optional[Dict[int, int]] = None) -> paths.MallocResult:
    heap = s.heap()
    return paths.try_malloc(heap.reader, paths.context_for(heap), n, written=written)


def free(s: Synthetic, mem: int, key: Optional[int] = None) -> paths.FreeResult:
    heap = s.heap()
    return paths.try_free(heap.reader, paths.context_for(heap, key), mem)


def system_mem(s: Synthetic) -> int:
    return s.heap_end - s.sbrk_base


# -- the unsorted loop ---------------------------------------------------------------------------

def unsorted_heap(version: tuple[int, int] = (2, 36)) -> tuple[Synthetic, int, int]:
    b = HeapBuilder(version, 8)
    b.chunk(0x20)
    u = b.chunk(0x100, "unsorted")
    g = b.chunk(0x30)
    b.chunk(0x20)
    return b.build(top_size_min=0x1000), u, g


def unsorted_check(s: Synthetic) -> Optional[str]:
    return malloc(s, 0x208).failed_check  # nb 0x210: no bin holds it; the loop takes u


def test_unsorted_victim_size():
    s, u, g = unsorted_heap()
    assert unsorted_check(s) is None
    s.poke(u + 8, 0x10)
    r = malloc(s, 0x208)
    assert (r.aborts, r.failed_check) == ("malloc(): invalid size (unsorted)", "UNSORTED_INVALID_SIZE")
    s.poke(u + 8, 0x20)  # above CHUNK_HDR_SZ: this check passes (the next chunk's fail)
    assert unsorted_check(s) not in (None, "UNSORTED_INVALID_SIZE")
    s.poke(u + 8, system_mem(s) + 0x10)
    assert unsorted_check(s) == "UNSORTED_INVALID_SIZE"
    s.poke(u + 8, system_mem(s))  # not above system_mem: passes, and its next chunk is past the heap
    r = malloc(s, 0x208)
    assert r.failed_check is None and r.crashes == f"reads {u + system_mem(s) + 8:#x}, which is not mapped: SIGSEGV"


def test_unsorted_next_size():
    s, u, g = unsorted_heap()
    s.poke(g + 8, 0x8)  # below CHUNK_HDR_SZ
    r = malloc(s, 0x208)
    assert (r.aborts, r.failed_check) == ("malloc(): invalid next size (unsorted)", "UNSORTED_INVALID_NEXT_SIZE")
    s.poke(g + 8, 0x10)  # CHUNK_HDR_SZ itself passes
    assert unsorted_check(s) != "UNSORTED_INVALID_NEXT_SIZE"
    s.poke(g + 8, system_mem(s) + 0x10)
    assert unsorted_check(s) == "UNSORTED_INVALID_NEXT_SIZE"
    s.poke(g + 8, system_mem(s))
    assert unsorted_check(s) != "UNSORTED_INVALID_NEXT_SIZE"


def test_unsorted_prev_size_dll_and_prev_inuse():
    s, u, g = unsorted_heap()
    s.poke(g, 0x110)
    r = malloc(s, 0x208)
    assert (r.aborts, r.failed_check) == ("malloc(): mismatching next->prev_size (unsorted)", "UNSORTED_PREV_SIZE")
    s.poke(g, 0x107)  # the flag bits are masked off prev_size
    assert unsorted_check(s) is None
    s.poke(g, 0x100)
    s.poke(u + FD, u)  # victim->fd is not the bin
    r = malloc(s, 0x208)
    assert (r.aborts, r.failed_check) == ("malloc(): unsorted double linked list corrupted", "UNSORTED_DLL")
    s.poke(u + FD, s.arena + 0x60)
    s.poke(u + BK, g)  # bck = victim->bk; bck->fd is not the victim
    assert unsorted_check(s) == "UNSORTED_DLL"
    s.poke(u + BK, s.arena + 0x60)
    s.poke(g + 8, 0x31)  # the next chunk says the victim is in use
    r = malloc(s, 0x208)
    assert (r.aborts, r.failed_check) == ("malloc(): invalid next->prev_inuse (unsorted)", "UNSORTED_NEXT_PREV_INUSE")


def test_unsorted_removal_check_of_228():
    """2.28 checks bck->fd == victim when it takes the victim out (no check 4 yet); 2.27 does not."""
    for version, expected in (((2, 28), "malloc(): corrupted unsorted chunks 3"), ((2, 27), None)):
        s, u, g = unsorted_heap(version)
        s.poke(u + BK, g)  # bck: the in-use chunk after it, whose fd is user data
        r = malloc(s, 0x208)
        assert r.aborts == expected, version


# -- small and fast bins -------------------------------------------------------------------------

def test_smallbin_victims_bck_fd():
    b = HeapBuilder((2, 36), 8)
    c = b.chunk(0x100, "small")
    g = b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0xf8)
    assert (r.source, r.bin_index, r.chunk) == ("small", 16, c)
    assert r.steps[-1] == f"small[16] is not empty: its last chunk {c:#x}"
    s.poke(c + BK, g)
    r = malloc(s, 0xf8)
    assert (r.aborts, r.failed_check) == ("malloc(): smallbin double linked list corrupted", "SMALLBIN_DLL")


def test_smallbin_stash_counts_the_chunks_moved():
    b = HeapBuilder((2, 36), 8)
    cs = []
    for _ in range(3):
        cs.append(b.chunk(0x100, "small"))
        b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0xf8)
    assert r.side_effects == ["2 more chunks of small[16] moved to tcache[14]"]
    assert r.chunk == cs[0]  # the bin's last (first freed)


def test_fast_victim_checks():
    b = HeapBuilder((2, 36), 8)
    f = b.chunk(0x40, "fast")
    b.chunk(0x20)
    s = b.build()
    s.poke(s.arena + 0x10 + 2 * 8, f + 8)  # fastbinsY[2]: a misaligned head
    r = malloc(s, 0x38)
    assert (r.aborts, r.failed_check) == ("malloc(): unaligned fastbin chunk detected 2", "FASTBIN_UNALIGNED_VICTIM")
    s.poke(s.arena + 0x10 + 2 * 8, f)
    s.poke(f + 8, 0x51)  # fastbin_index (0x50) = 3, not 2
    r = malloc(s, 0x38)
    assert (r.aborts, r.failed_check) == ("malloc(): memory corruption (fast)", "FASTBIN_VICTIM_SIZE")
    s.poke(f + 8, 0x4F)  # 0x48 with its flag bits: fastbin_index (0x48) is 2 still
    assert malloc(s, 0x38).aborts is None


def test_fast_stash_of_one_chunk_is_singular():
    b = HeapBuilder((2, 36), 8)
    f1 = b.chunk(0x40, "fast")
    b.chunk(0x20)
    f2 = b.chunk(0x40, "fast")
    b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0x38)
    assert (r.chunk, r.side_effects) == (f2, ["1 more chunk of fast[2] moved to tcache[2]"])
    assert r.steps[1] == f"fast[2] is not empty: its first chunk {f2:#x}"
    assert f1


# -- the tcache's double-free walk -------------------------------------------------------------------

def tcache_heap(version: tuple[int, int] = (2, 36)) -> tuple[Synthetic, int, int]:
    b = HeapBuilder(version, 8)
    t1 = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    t2 = b.chunk(0x40, "tcache")
    b.chunk(0x20)
    return b.build(), t1, t2


def test_double_free_walk():
    s, t1, t2 = tcache_heap()
    r = free(s, t1 + 0x10, TCACHE_KEY)
    assert (r.aborts, r.failed_check) == ("free(): double free detected in tcache 2", "TCACHE_DOUBLE_FREE")
    assert r.steps[2] == "the chunk's tcache key matches: glibc walks the tcache for a double free"
    s.poke(t2 + 0x10, ((t2 + 0x10) >> 12) ^ (t1 + 0x18))  # t2's next: misaligned
    r = free(s, t1 + 0x10, TCACHE_KEY)
    assert (r.aborts, r.failed_check) == ("free(): unaligned chunk detected in tcache 2", "TCACHE_FREE_UNALIGNED")


def test_double_free_walk_counts_to_tcache_count():
    s, t1, t2 = tcache_heap()
    s.poke(s.mp + s.layout.malloc_par.offset("tcache_count"), 1)  # two entries, one allowed
    r = free(s, t1 + 0x10, TCACHE_KEY)
    assert (r.aborts, r.failed_check) == ("free(): too many chunks detected in tcache", "TCACHE_FREE_TOO_MANY")
    s.poke(s.mp + s.layout.malloc_par.offset("tcache_count"), 2)  # two of two: the walk reaches t1
    assert free(s, t1 + 0x10, TCACHE_KEY).failed_check == "TCACHE_DOUBLE_FREE"


def key_by_coincidence(version: Tuple[int, int]) -> Tuple[Synthetic, int]:
    """A tcache[2] chunk, then an in-use chunk of its size whose key word holds the key."""
    b = HeapBuilder(version, 8)
    b.chunk(0x40, "tcache")
    b.chunk(0x20)
    a = b.chunk(0x40)
    b.chunk(0x20)
    s = b.build()
    s.poke(a + 0x18, TCACHE_KEY)
    return s, a


def test_a_key_that_matches_by_coincidence():
    s, a = key_by_coincidence((2, 36))
    r = free(s, a + 0x10, TCACHE_KEY)
    assert (r.to, r.aborts) == ("tcache[2]", None)
    assert r.steps[2:4] == ["the chunk's tcache key matches: glibc walks the tcache for a double free",
                            "not found in the tcache: a coincidence"]
    r = free(s, a + 0x10, TCACHE_KEY + 1)
    assert r.steps[2] == "the chunk's tcache key does not match: no double-free walk"


def test_from_242_a_coincidence_clears_the_key_and_free_starts_over():
    s, a = key_by_coincidence((2, 42))
    r = free(s, a + 0x10, TCACHE_KEY)
    assert r.to == "tcache[2]"
    assert r.steps.count(f"free({a + 0x10:#x}): chunk {a:#x}, size 0x40") == 2  # the retry
    assert r.steps.count("not found in the tcache: a coincidence") == 1


# -- unlink_chunk ---------------------------------------------------------------------------------

def test_unlink_checks():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    u = b.chunk(0x500, "unsorted")
    a = b.chunk(0x500)
    g = b.chunk(0x20)
    s = b.build()
    s.poke(u + 8, 0x4f1)  # size 0x4f0: prev_size of a (0x500) still says 0x500 -> FREE_CONSOLIDATE_PREV_SIZE
    assert free(s, a + 0x10).failed_check == "FREE_CONSOLIDATE_PREV_SIZE"
    s.poke(u + 8, 0x501)
    s.poke(u + FD, g)  # fd->bk != p
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("corrupted double-linked list", "UNLINK_DLL")


def test_unlink_prev_size_and_nextsize():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    n = b.chunk(0x500, "unsorted")
    g = b.chunk(0x20)
    s = b.build()
    s.poke(g, 0x4f0)  # the chunk after n: prev_size is not n's size
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("corrupted size vs. prev_size", "UNLINK_PREV_SIZE")
    s.poke(g, 0x500)
    s.poke(n + FDN, g)  # a large chunk with fd_nextsize set: its nextsize ring is checked
    r = free(s, a + 0x10)
    assert (r.aborts, r.failed_check) == ("corrupted double-linked list (not small)", "UNLINK_NEXTSIZE")


# -- malloc_consolidate ------------------------------------------------------------------------------

def consolidate_heap() -> tuple[Synthetic, int, int]:
    b = HeapBuilder((2, 36), 8)
    for _ in range(7):
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    f = b.chunk(0x20, "fast")
    g = b.chunk(0x30)
    return b.build(top_size_min=0x2000), f, g


def test_consolidate_moves_a_fast_chunk_to_the_unsorted_bin():
    s, f, g = consolidate_heap()
    A = s.arena
    w: Dict[int, int] = {}
    r = malloc(s, 0x1000, w)  # a large request consolidates first
    assert r.side_effects[0].startswith("malloc_consolidate: ")
    assert r.side_effects[1] == f"unsorted chunk {f:#x} (size 0x20) sorted into small[2]"
    assert (w[A + 0x10], w[f + 8], w[g + 8], w[g]) == (0, 0x21, 0x30, 0x20)  # head, P cleared, foot
    assert w[A + 8] & 0xFFFFFFFF == 0  # have_fastchunks cleared


def test_consolidate_checks():
    s, f, g = consolidate_heap()
    s.poke(s.arena + 0x10, f + 8)
    r = malloc(s, 0x1000)
    assert (r.aborts, r.failed_check) == ("malloc_consolidate(): unaligned fastbin chunk detected",
                                         "CONSOLIDATE_UNALIGNED")
    s.poke(s.arena + 0x10, f)
    s.poke(f + 8, 0x31)  # in fast bin 0 with fastbin_index 1
    r = malloc(s, 0x1000)
    assert (r.aborts, r.failed_check) == ("malloc_consolidate(): invalid chunk size", "CONSOLIDATE_SIZE")


def test_consolidate_merges_backwards_and_into_top():
    b = HeapBuilder((2, 36), 8)
    for _ in range(7):
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    u = b.chunk(0x100, "small")
    f = b.chunk(0x20, "fast")
    b.chunk(0x30)
    f2 = b.chunk(0x20, "fast")
    s = b.build(top_size_min=0x2000)
    w: Dict[int, int] = {}
    r = malloc(s, 0x1000, w)
    assert r.aborts is None
    assert any(e == f"unsorted chunk {u:#x} (size 0x120) sorted into small[18]" for e in r.side_effects)
    # f2 borders top: merged into it; then the request is cut from that top
    assert (r.source, r.chunk) == ("top", f2)
    s.poke(f, 0x110)  # prev_size no longer the small chunk's size
    r = malloc(s, 0x1000)
    assert (r.aborts, r.failed_check) == ("corrupted size vs. prev_size in fastbins", "CONSOLIDATE_PREV_SIZE")


# -- sysmalloc ---------------------------------------------------------------------------------------

def test_sysmalloc_maps_from_mmap_threshold():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    r = malloc(s, 0x20000 - 8)  # nb 0x20000 = mmap_threshold
    assert (r.source, r.chunk, r.top_after) == ("mmap", None, None)
    assert r.side_effects == ["sysmalloc: size 0x20000 >= mmap_threshold 0x20000: a new mapping (the kernel picks "
                              "its address)"]
    r = malloc(s, 0x20000 - 0x28)  # nb 0x1fff0: below, top too small: the heap grows
    assert (r.source, r.chunk, r.top_after) == ("top", s.top, None)
    s.poke(s.mp + s.layout.malloc_par.offset("n_mmaps_max"), 0)  # no more mappings allowed: the heap grows
    heap = s.heap()
    r = paths.try_malloc(heap.reader, paths.context_for(heap), 0x20000 - 8)
    assert r.source == "top"


def test_a_request_past_ptrdiff_max():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    r = malloc(s, 1 << 63)
    assert r.steps == ["the request exceeds PTRDIFF_MAX: NULL, errno ENOMEM"]
    assert (r.chunk, r.source) == (None, None)
    assert malloc(s, (1 << 63) - 1).source == "mmap"
