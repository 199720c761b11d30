"""try_realloc (paths.py) on synthetic heaps, against glibc 2.36's __libc_realloc and
_int_realloc (malloc/malloc.c) step by step, every expected value written by hand: realloc(p, 0)
frees; the pointer check; checked_request2size; an mmapped chunk; the old and next size checks;
"already big enough" (split or not at MINSIZE); grown into top (at nb + MINSIZE exactly, and
0x10 short); grown over a free next chunk (at nb exactly, and 0x10 short); moved (_int_malloc,
then _int_free (av, oldp, 1) of the old chunk, which from 2.42 skips the tcache).

The heaps (tests/synthetic.py, x86_64): the tcache_perthread_struct's chunk (0x290) at sbrk_base
0x555555560000, so the first chunk laid out is at 0x555555560290."""

from __future__ import annotations

from gdb_heap import paths
from tests.synthetic import HeapBuilder, Synthetic

FIRST = 0x555555560290


def realloc(s: Synthetic, mem: int, n: int) -> paths.MallocResult:
    heap = s.heap()
    return paths.try_realloc(heap.reader, paths.context_for(heap), mem, n)


def test_realloc_to_zero_frees_and_returns_null():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0)
    assert a == FIRST
    assert r.steps == [
        "realloc(p, 0) frees p and returns NULL",
        "free: free(0x5555555602a0): chunk 0x555555560290, size 0x30",
        "free: the pointer and size pass: aligned, at least MINSIZE, no wrap",
        "free: tcache key: unknown (2.34+ keeps it in libc's tcache_key); the chunk's key word "
        "0x4141414141414141 is taken as not the key",
        "free: tcache[1] has room (0 of 7): the chunk goes to tcache[1]"]
    assert r.side_effects == ["chunk 0x555555560290 freed to tcache[1]"]
    assert (r.call, r.request, r.chunk, r.user_address, r.source, r.aborts) == ("realloc", 0, None, None, None, None)
    assert r.top_after == s.top == 0x5555555602E0  # 0x290 + 0x30 + 0x20


def test_shrinking_splits_off_the_rest_and_frees_it():
    """0x600 to 0x18 bytes: nb 0x20, the rest 0x5e0 (over tcache_max_bytes) freed by _int_free
    into the unsorted bin; set_bit_at_offset (remainder, remainder_size, PREV_INUSE) is what
    keeps free's !prev check quiet, and the remainder's own PREV_INUSE stops a backward merge."""
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x600)
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0x18)
    rem = FIRST + 0x20
    assert r.steps == [
        "realloc(0x5555555602a0, 0x18): chunk 0x555555560290 of size 0x600",
        "the rest 0x5555555602b0 of size 0x5e0 is freed",
        "free: free(0x5555555602c0): chunk 0x5555555602b0, size 0x5e0",
        "free: the pointer and size pass: aligned, at least MINSIZE, no wrap",
        "free: top, out, !prev and the next chunk's size pass",
        "free: chunk 0x5555555602b0 of size 0x5e0 goes to unsorted"]
    assert r.side_effects == [f"the rest {rem:#x} of size 0x5e0 is freed", f"chunk {rem:#x} freed to unsorted"]
    assert (r.source, r.chunk, r.user_address, r.aborts) == ("in place", a, a + 0x10, None)
    assert r.top_after == FIRST + 0x620


def test_shrinking_by_less_than_minsize_keeps_the_chunk_whole():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x40)
    b.chunk(0x20)
    s = b.build()
    for n in (0x28, 0x38):  # nb 0x30 (the rest 0x10 < MINSIZE 0x20), nb 0x40 (no rest)
        r = realloc(s, a + 0x10, n)
        assert (r.source, r.chunk, r.side_effects, r.aborts) == ("in place", a, [], None), hex(n)
        assert r.steps == [f"realloc(0x5555555602a0, {n:#x}): chunk 0x555555560290 of size 0x40"]
    r = realloc(s, a + 0x10, 0x18)  # nb 0x20: the rest 0x20 = MINSIZE is split off, to tcache[0]
    assert r.side_effects == [f"the rest {a + 0x20:#x} of size 0x20 is freed",
                              f"chunk {a + 0x20:#x} freed to tcache[0]"]


def test_the_split_remainder_is_freed_without_the_tcache_from_242():
    """2.42's _int_realloc frees the remainder with _int_free_chunk: no tcache, so a 0x20
    remainder goes to fast[0] (2.36: tcache[0], above)."""
    b = HeapBuilder((2, 42), 8)
    a = b.chunk(0x40)
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0x18)
    assert r.side_effects == [f"the rest {a + 0x20:#x} of size 0x20 is freed", f"chunk {a + 0x20:#x} freed to fast[0]"]
    assert r.steps[2:] == ["free: size 0x20 <= global_max_fast: the chunk goes to fast[0]"]


def test_growing_into_top_needs_nb_plus_minsize():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    s = b.build(top_size_min=0x100)
    top = a + 0x30
    top_size = s.top_size
    assert top == s.top and top_size == 0x1000 - 0x2C0  # the builder's top: up to the page end
    nb = 0x30 + top_size - 0x20  # oldsize + nextsize == nb + MINSIZE: grows
    r = realloc(s, a + 0x10, nb - 8)
    assert r.steps == [f"realloc(0x5555555602a0, {nb - 8:#x}): chunk 0x555555560290 of size 0x30",
                       f"grown into top: top becomes {a + nb:#x}"]
    assert (r.source, r.chunk, r.top_after) == ("top", a, a + nb)
    assert r.side_effects == [f"grown into top: top becomes {a + nb:#x}"]



def test_growing_past_top_grows_the_heap_in_place():
    """0x10 more than top can give: _int_malloc finds no chunk and sysmalloc grows the heap; the
    chunk is cut at the old top, which is oldp's next chunk, so _int_realloc merges them
    (newp == next) and splits in memory that does not exist yet: the path ends there, in place,
    with no crash predicted and top not known."""
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    s = b.build(top_size_min=0x100)
    nb = 0x30 + s.top_size - 0x20 + 0x10
    r = realloc(s, a + 0x10, nb - 8)
    grow = f"sysmalloc: top {s.top:#x} (size {s.top_size:#x}) is too small: the heap grows and the chunk is cut " \
        "from the grown top"
    assert r.steps == [f"realloc(0x5555555602a0, {nb - 8:#x}): chunk 0x555555560290 of size 0x30", grow]
    assert (r.source, r.chunk, r.crashes, r.aborts, r.top_after) == ("top", a, None, None, None)


def test_moved_to_a_grown_top_frees_the_old_chunk():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build(top_size_min=0x100)
    r = realloc(s, a + 0x10, 0x2000)  # below mmap_threshold, more than top: sysmalloc
    assert (r.source, r.chunk, r.crashes, r.top_after) == ("top", s.top, None, None)
    assert r.side_effects[1:] == [f"moved to {s.top + 0x10:#x}; the old chunk {a:#x} is freed",
                                  f"chunk {a:#x} freed to tcache[1]"]


def test_growing_into_the_free_chunk_after_it():
    """next is a free small chunk (its next's PREV_INUSE clear): unlink_chunk, then newsize =
    oldsize + nextsize; at nb exactly nothing is left to split."""
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    f = b.chunk(0x100, "small")
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0x130 - 8)  # nb 0x130 = 0x30 + 0x100
    assert r.steps == ["realloc(0x5555555602a0, 0x128): chunk 0x555555560290 of size 0x30",
                       f"grown over the free chunk {f:#x} after it (taken out of its bin)"]
    assert (r.source, r.chunk, r.aborts, r.top_after) == ("next", a, None, s.top)
    r = realloc(s, a + 0x10, 0x100 - 8)  # nb 0x100: grown over it and 0x30 split off again
    assert r.source == "next" and r.side_effects[1:] == [f"the rest {a + 0x100:#x} of size 0x30 is freed",
                                                          f"chunk {a + 0x100:#x} freed to tcache[1]"]
    r = realloc(s, a + 0x10, 0x140 - 8)  # nb 0x140: too big for both: _int_malloc, from top
    assert r.source == "top" and r.chunk == s.top
    assert r.side_effects[-2:] == [f"moved to {s.top + 0x10:#x}; the old chunk {a:#x} is freed",
                                   f"chunk {a:#x} freed to tcache[1]"]


def test_a_next_chunk_in_the_tcache_is_in_use_for_realloc():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x100, "tcache")
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0x128)
    assert r.source == "top" and r.chunk == s.top and not any("grown over" in e for e in r.side_effects)


def test_moving_frees_the_old_chunk_like_free_from_242():
    """From 2.42 _int_realloc's _int_free_chunk: the old chunk goes to a bin, not the tcache."""
    b = HeapBuilder((2, 42), 8)
    a = b.chunk(0x20)
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 0x100)
    assert r.source == "top" and r.side_effects[-1] == f"chunk {a:#x} freed to fast[0]"


def test_an_mmapped_chunk_is_mremapped():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x1000)
    b.chunk(0x20)
    s = b.build()
    s.poke(a + 8, 0x1000 | 2)  # IS_MMAPPED
    r = realloc(s, a + 0x10, 0x2000)
    assert r.steps == ["realloc(0x5555555602a0, 0x2000): chunk 0x555555560290 of size 0x1000",
                       "an mmapped chunk: mremap_chunk (the kernel picks the address)"]
    assert (r.source, r.chunk, r.top_after, r.aborts) == ("mmap", None, None, None)


def test_the_request_past_ptrdiff_max_is_enomem():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, a + 0x10, 1 << 63)  # PTRDIFF_MAX + 1
    assert r.steps[-1] == "the request exceeds PTRDIFF_MAX: NULL, errno ENOMEM"
    assert (r.chunk, r.source, r.aborts) == (None, None, None)
    r = realloc(s, a + 0x10, (1 << 63) - 1)  # PTRDIFF_MAX itself: a request; top cannot: sysmalloc's mmap
    assert r.steps[-1] != "the request exceeds PTRDIFF_MAX: NULL, errno ENOMEM"


def test_realloc_checks():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    c = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    system_mem = s.heap_end - s.sbrk_base
    assert realloc(s, a + 0x18, 0x40).aborts == "realloc(): invalid pointer"  # misaligned_chunk
    s.poke(a + 8, (-a & (2**64 - 1)) + 0x10 | 1)  # oldp > -oldsize: wraps
    assert realloc(s, a + 0x10, 0x40).aborts == "realloc(): invalid pointer"
    s.poke(a + 8, 0x10)  # chunksize_nomask (oldp) <= CHUNK_HDR_SZ (0x10)
    r = realloc(s, a + 0x10, 0x40)
    assert (r.aborts, r.failed_check) == ("realloc(): invalid old size", "REALLOC_OLD_SIZE")
    s.poke(a + 8, system_mem | 1)  # oldsize >= system_mem
    assert realloc(s, a + 0x10, 0x40).aborts == "realloc(): invalid old size"
    s.poke(a + 8, 0x30 | 1)
    s.poke(c + 8, 0x10)  # the next chunk's size field <= CHUNK_HDR_SZ
    r = realloc(s, a + 0x10, 0x40)
    assert (r.aborts, r.failed_check, r.top_after) == ("realloc(): invalid next size", "REALLOC_NEXT_SIZE", None)
    s.poke(c + 8, system_mem | 1)
    assert realloc(s, a + 0x10, 0x40).aborts == "realloc(): invalid next size"
    s.poke(c + 8, 0x11)  # one more than CHUNK_HDR_SZ: passes (a size glibc's check lets through)
    assert realloc(s, a + 0x10, 0x28).aborts is None
    s.poke(c + 8, (system_mem - 0x10) | 1)  # below system_mem: passes
    assert realloc(s, a + 0x10, 0x28).aborts is None
    s.poke(c + 8, 0x30 | 1)
    s.poke(a + 8, 0x11)  # old size field 0x11: above CHUNK_HDR_SZ, passes the old size check
    assert realloc(s, a + 0x10, 0x8).aborts != "realloc(): invalid old size"


def test_realloc_of_null_names_itself_first():
    b = HeapBuilder((2, 36), 8)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    r = realloc(s, 0, 0x28)
    assert r.steps == ["realloc(NULL, n) is malloc(n)", "malloc(0x28): chunk size 0x30",
                       "tcache[1] is not empty: its first chunk"]
    assert (r.request, r.chunk) == (0x28, t)
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    assert realloc(b.build(), a + 0x10, 0x28).request == 0x28
