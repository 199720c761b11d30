"""glibc's free and malloc paths (gdb_heap/paths.py) on synthetic heaps, with hand expectations.

The heaps come from tests/synthetic.py; the expected bins and messages are written by hand from
malloc.c (tcache first, the fast bin, the unsorted bin, top), the sizes from tests/handbins.py.
A fuzz (Hypothesis) over corrupted heaps checks that the paths never raise and never loop, and
that a prediction reads only the bins and the chunk's neighbours, however big the heap.
"""

from __future__ import annotations

import signal

from hypothesis import HealthCheck, given, settings

from gdb_heap import paths
from gdb_heap.heap import Heap
from gdb_heap.memory import Bytes, ImageMemory, Reader
from tests import handbins as hb
from tests.synthetic import HeapBuilder, Synthetic, many_chunks_heap
from tests.test_fuzz import EXAMPLES, corrupted

DOUBLE_FREE = "free(): double free detected in tcache 2"


def predict_free(s: Synthetic, mem: int, key: int | None = None) -> paths.FreeResult:
    heap = s.heap()
    return paths.try_free(heap.reader, paths.context_for(heap, key), mem)


def predict_malloc(s: Synthetic, n: int, calloc: bool = False) -> paths.MallocResult:
    heap = s.heap()
    return paths.try_malloc(heap.reader, paths.context_for(heap), n, calloc)


def test_free_to_tcache_with_room():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    r = predict_free(s, a + 0x10)
    assert (r.to, r.bin_index, r.aborts) == ("tcache[1]", 1, None)  # (0x30 - 0x20) / 0x10


def test_free_of_a_tcache_chunk_is_a_double_free_from_229():
    for version, expected in (((2, 36), DOUBLE_FREE), ((2, 29), DOUBLE_FREE), ((2, 27), None)):
        b = HeapBuilder(version, 8)
        t = b.chunk(0x40, "tcache")
        b.chunk(0x20)
        s = b.build()
        r = predict_free(s, t + 0x10)
        assert r.aborts == expected, version
        if expected is None:  # 2.26-2.28 have no key: the chunk goes in again, a loop
            assert r.to == "tcache[2]"


def full_tcache_0x20(version: tuple[int, int]) -> HeapBuilder:
    """tcache[0] full: seven 0x20 chunks, each behind an in-use 0x30 guard."""
    b = HeapBuilder(version, 8)
    for _ in range(7):
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    return b


def test_full_tcache_goes_to_the_fast_bin():
    b = full_tcache_0x20((2, 31))
    a = b.chunk(0x20)
    b.chunk(0x30)
    s = b.build()
    r = predict_free(s, a + 0x10)
    assert (r.to, r.aborts) == ("fast[0]", None)
    assert any("full" in step for step in r.steps)


def test_fast_head_freed_again_is_fasttop():
    b = full_tcache_0x20((2, 36))
    f = b.chunk(0x20, "fast")
    b.chunk(0x30)
    s = b.build()
    assert predict_free(s, f + 0x10).aborts == "double free or corruption (fasttop)"


def test_free_of_top_and_misaligned():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x20)
    s = b.build(top_size_min=0x1000)
    assert predict_free(s, s.top + 0x10).aborts == "double free or corruption (top)"
    assert predict_free(s, a + 0x18).aborts == "free(): invalid pointer"


def test_large_free_merges_backwards_into_unsorted():
    b = HeapBuilder((2, 36), 8)
    u = b.chunk(0x500, "unsorted")
    a = b.chunk(0x500)
    b.chunk(0x20)
    s = b.build()
    r = predict_free(s, a + 0x10)
    assert (r.to, r.merged_with, r.aborts) == ("unsorted", [u], None)


def test_large_free_before_top_goes_into_top():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    s = b.build()
    r = predict_free(s, a + 0x10)
    assert (r.to, r.top_after, r.trimmed) == ("top", a, 0)


def test_malloc_from_tcache_then_fast_then_top():
    b = HeapBuilder((2, 36), 8)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build(top_size_min=0x1000)
    r = predict_malloc(s, 0x28)
    assert (r.source, r.chunk, r.user_address) == ("tcache", t, t + 0x10)
    r = predict_malloc(s, 0x28, calloc=True)  # calloc skips the tcache
    assert (r.source, r.chunk, r.top_after) == ("top", s.top, s.top + 0x30)


def test_malloc_from_fast_bin_with_an_empty_tcache():
    b = HeapBuilder((2, 36), 8)
    f = b.chunk(0x40, "fast")
    b.chunk(0x20)
    s = b.build()
    r = predict_malloc(s, 0x38)
    assert (r.source, r.bin_index, r.chunk) == ("fast", hb.fastbin_index(0x40, 8), f)


def test_malloc_unsorted_exact_fit_and_remainder():
    b = HeapBuilder((2, 36), 8)
    u = b.chunk(0x500, "unsorted")
    b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    r = predict_malloc(s, 0x4F8)
    assert (r.source, r.chunk) == ("unsorted", u)
    r = predict_malloc(s, 0x1000)  # sorts u into its large bin, then top
    assert r.source == "top" and any("sorted into large[" in e for e in r.side_effects)


def test_memory_is_never_written():
    b = HeapBuilder((2, 36), 8)
    u = b.chunk(0x500, "unsorted")
    b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    before = [bytes(d) for _, d in s.memory.regions]
    predict_malloc(s, 0x100)
    predict_free(s, u + 0x10 + 0x500)
    assert [bytes(d) for _, d in s.memory.regions] == before


def test_fake_chunks_finds_an_unaligned_fast_size_before_safe_linking():
    """The classic 0x7f byte before a hook: fast[5] (0x70) by fastbin_index's low 32 bits,
    at any byte up to 2.31; from 2.32 only aligned places count."""
    for version, unaligned in (((2, 31), True), ((2, 36), False)):
        base = 0x7FFFF7DD0000
        data = bytearray(0x1000)  # a page: memory is read by pages
        data[0x13D] = 0x7F  # a pointer's top byte, 0x100 bytes in
        target = base + 0x180
        mem = ImageMemory({base: data})
        b = HeapBuilder(version, 8)
        found = paths.fake_chunks(Reader(mem, 8), b.layout, target, 64, 0x100)
        at = {f.chunk: f for f in found}
        chunk = base + 0x13D - 8  # its size word starts at the 0x7f byte
        if unaligned:
            assert "fast[5]" in at[chunk].fits and at[chunk].distance == target - chunk
        else:
            assert chunk not in at


def test_a_prediction_reads_only_the_neighbourhood():
    """A prediction reads the bins, the chunk and its neighbours, never the heap in between:
    no read lands in a block (the Reader's unit) that holds neither the first chunks (the
    tcache, the freed chunk) nor top, however many chunks lie there."""
    s = many_chunks_heap(8000)
    log: list[tuple[int, int]] = []

    class Logged(ImageMemory):
        def read(self, address: int, length: int) -> Bytes:
            log.append((address, length))
            return super().read(address, length)

    memory = Logged(dict(s.memory.regions))
    heap = Heap(Reader(memory, s.S), s.layout, s.anchors)
    ctx = paths.context_for(heap)
    log.clear()
    paths.try_malloc(heap.reader, ctx, 0x1000)
    paths.try_malloc(heap.reader, ctx, 0x18)
    paths.try_free(heap.reader, ctx, s.chunks[10].address + 0x10)
    block = 1 << 16
    near = (s.sbrk_base, s.chunks[10].address, s.top)
    middle = [(a, n) for a, n in log if s.sbrk_base <= a < s.heap_end and not any(
        a // block <= x // block <= (a + n - 1) // block for x in near)]
    assert (s.heap_end - s.sbrk_base) // block >= 4  # blocks in between exist
    assert middle == [], [hex(a) for a, _ in middle]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(corrupted())
def test_fuzz_paths_never_raise_or_loop(case):
    s, probes = case
    old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(AssertionError("a prediction hangs")))
    signal.alarm(30)
    try:
        heap = Heap(Reader(ImageMemory(dict(s.memory.regions)), s.S), s.layout, s.anchors)
        try:
            ctx = paths.context_for(heap)
        except Exception as e:  # only the heap's own errors may stop it
            from gdb_heap.errors import HeapError
            assert isinstance(e, HeapError), e
            return
        for p in probes[:4]:
            r = paths.try_free(heap.reader, ctx, p)
            assert r.steps
        for n in (0, 0x18, 0x100, 0x4F8, 0x1000, 0x40000):
            m = paths.try_malloc(heap.reader, ctx, n)
            assert m.steps
        paths.fake_chunks(heap.reader, s.layout, s.arena + 0x40, 64, 0x80)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)



def _fast_pair_with_misaligned_link() -> tuple[Synthetic, int]:
    """fast bin 0x40 holding two chunks, the head's fd revealing a misaligned address (an empty
    tcache): the first malloc of 0x38 takes the head, then meets the bad link."""
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x40, "fast")
    b.chunk(0x20)
    b.chunk(0x40, "fast")
    b.chunk(0x20)
    s = b.build()
    head = s.chain("fast", hb.fastbin_index(0x40, 8)).chunks[0]
    fd = head + 0x10
    s.poke(fd, (fd >> 12) ^ 0x4448)  # PROTECT_PTR: REVEAL_PTR gives 0x4448, not 16-aligned
    return s, head


def test_single_threaded_malloc_meets_a_bad_fast_link_when_stashing():
    # SINGLE_THREAD_P: *fb = REVEAL_PTR (victim->fd) unchecked; the stash loop's tc_victim is checked
    s, _ = _fast_pair_with_misaligned_link()
    assert predict_malloc(s, 0x38).aborts == "malloc(): unaligned fastbin chunk detected 3"


def test_multi_threaded_malloc_meets_a_bad_fast_link_in_remove_fb():
    # not SINGLE_THREAD_P: REMOVE_FB checks the revealed fd of the taken victim first
    s, _ = _fast_pair_with_misaligned_link()
    heap = s.heap()
    heap.anchors.single_thread = False
    r = paths.try_malloc(heap.reader, paths.context_for(heap), 0x38)
    assert r.aborts == "malloc(): unaligned fastbin chunk detected"


def test_free_does_not_check_the_fast_heads_size():
    # free() calls _int_free (av, p, 0): "invalid fastbin entry (free)" needs have_lock
    b = full_tcache_0x20((2, 36))
    f = b.chunk(0x20, "fast")
    b.chunk(0x30)
    a = b.chunk(0x20)
    b.chunk(0x30)
    s = b.build()
    s.poke(f + 8, 0x91)  # the fast bin's head now claims another bin's size
    r = predict_free(s, a + 0x10)
    assert (r.to, r.aborts) == ("fast[0]", None)


def test_consolidation_of_many_fast_chunks_goes_through():
    """A large request consolidates every fast chunk: 30000 of them, far past the base budget
    of 2**18 words (at least 11 words each), each between in-use chunks: all go to the unsorted
    bin, MAX_ITERS of them are sorted into their small bins, and the request is cut from top."""
    b = HeapBuilder((2, 36), 8)
    fast = []
    for i in range(30000):
        fast.append(b.chunk((0x20, 0x30, 0x40)[i % 3], "fast"))
        b.chunk(0x20)
    s = b.build(top_size_min=0x2000)
    r = predict_malloc(s, 0x1000)
    assert not r.gave_up and r.aborts is None and r.crashes is None
    assert (r.source, r.chunk, r.top_after) == ("top", s.top, s.top + 0x1010)
    sorted_into = [e for e in r.side_effects if " sorted into small[" in e]
    assert len(sorted_into) == 10000  # MAX_ITERS
    # The fast bins are taken in index order, each from its head: the last 0x20 chunk freed is
    # the first consolidated, so it is the unsorted bin's tail and the first one sorted.
    assert sorted_into[0] == f"unsorted chunk {fast[-3]:#x} (size 0x20) sorted into small[2]"


def test_a_cyclic_fast_bin_ends_with_a_clear_answer():
    """Fast bin links that loop (A -> B -> A): consolidation ends with an abort, a crash or a
    give-up, never a hang, however the cycle goes (with and without safe-linking)."""
    for version in ((2, 31), (2, 36), (2, 27)):
        b = HeapBuilder(version, 8)
        a = b.chunk(0x20, "fast")
        b.chunk(0x20)
        c = b.chunk(0x20, "fast")
        b.chunk(0x20)
        s = b.build()
        # c was freed last: the bin is c -> a; a's fd now points back to c (safe-linking from
        # 2.32 stores it xored with its own address >> 12).
        s.poke(a + 0x10, ((a + 0x10) >> 12) ^ c if version >= (2, 32) else c)
        r = predict_malloc(s, 0x1000)
        assert r.gave_up or r.aborts or r.crashes, (version, r.steps[-3:])


def test_free_of_null_does_nothing():
    """__libc_free returns at once on a null pointer (malloc.c: "free(0) has no effect"): no
    chunk header is read, so no crash at address -2 * SIZE_SZ."""
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    r = predict_free(b.build(), 0)
    assert (r.to, r.aborts, r.crashes, r.gave_up, r.merged_with) == (None, None, None, False, [])


def test_realloc_of_null_is_malloc():
    """__libc_realloc(NULL, n) is __libc_malloc(n): here the tcache's 0x30 chunk."""
    b = HeapBuilder((2, 36), 8)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    r = paths.try_realloc(heap.reader, paths.context_for(heap), 0, 0x28)
    assert (r.call, r.source, r.chunk, r.aborts, r.crashes) == ("realloc", "tcache", t, None, None)


def test_unsorted_size_check_before_229_counts_the_flag_bits():
    """glibc 2.26-2.28 compare the unsorted victim's raw size field (chunksize_nomask) with
    system_mem: system_mem | PREV_INUSE is more, though its size is not."""
    b = HeapBuilder((2, 27), 8)
    u = b.chunk(0x100, "unsorted")
    b.chunk(0x20)
    s = b.build()
    system_mem = s.heap_end - s.sbrk_base  # the builder's heap: sbrk_base to its end
    s.poke(u + 8, system_mem | 1)
    assert predict_malloc(s, 0x200).aborts == "malloc(): memory corruption"
