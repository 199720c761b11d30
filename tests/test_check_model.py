"""gdb_heap.check on synthetic heaps: healthy heaps have no problem; each damage, made by hand
with glibc's layout rules (tests/synthetic.py), is named at the chunk it touched."""

from typing import List

import pytest

from gdb_heap.check import check_arena
from gdb_heap.model import Problem
from tests.synthetic import HeapBuilder, Synthetic, every_bin_heap, uninitialised_image

CONFIGS = [((2, 36), 8), ((2, 27), 8), ((2, 31), 8), ((2, 42), 8), ((2, 43), 8), ((2, 36), 4), ((2, 26), 4)]


def problems(s: Synthetic) -> List[Problem]:
    heap = s.heap()
    return check_arena(heap, heap.main_arena).problems


def at(found: List[Problem], address: int, *words: str) -> Problem:
    hits = [p for p in found if p.address == address and all(w in p.message for w in words)]
    assert hits, f"no problem at {address:#x} saying {words}: {found}"
    return hits[0]


@pytest.mark.parametrize("version, word", CONFIGS)
def test_healthy_heaps_have_no_problems(version, word):
    _, s = every_bin_heap(version, word)
    heap = s.heap()
    report = check_arena(heap, heap.main_arena)
    assert report.problems == []
    assert report.chunks == len(s.chunks)
    assert report.listed == sum(len(c.chunks) for c in s.chains)


def test_no_heap_yet_is_not_a_problem():
    s = uninitialised_image()
    assert problems(s) == []


def small_heap(kind: str, version=(2, 36), word=8):
    b = HeapBuilder(version, word)
    b.chunk(0x20)
    free = b.chunk(0x100 if kind != "large" else 0x440, kind)
    after = b.chunk(0x20)
    b.chunk(0x20)
    return free, after, b.build()


# free(used) checks the next chunk's PREV_INUSE only past the tcache (chunks up to 0x410, bin not
# full) and the fast bins (up to 0x80): a 0x30 chunk goes to the tcache unchecked.
@pytest.mark.parametrize("size, abort", [(0x500, "double free or corruption (!prev)"), (0x30, None)])
def test_prev_inuse_clear_after_a_chunk_in_use(size, abort):
    b = HeapBuilder()
    used = b.chunk(size)
    nxt = b.chunk(0x20)
    s = b.build()
    s.poke(nxt + 8, 0x20)  # PREV_INUSE cleared: claims `used` is free
    p = at(problems(s), nxt, "PREV_INUSE clear", f"{used:#x}", "in use")
    assert p.glibc_abort == abort


# The small bin's victim is taken without unlink_chunk (no prev_size check); a large bin's
# chunk is unlinked ("corrupted size vs. prev_size").
@pytest.mark.parametrize("kind, abort", [("small", None),
                                         ("unsorted", "malloc(): mismatching next->prev_size (unsorted)"),
                                         ("large", "corrupted size vs. prev_size")])
def test_prev_size_disagrees_with_the_free_chunk(kind, abort):
    free, after, s = small_heap(kind)
    s.poke(after, 0x90)  # the footer no longer repeats the free chunk's size
    p = at(problems(s), free, "prev_size is 0x90")
    assert p.glibc_abort == abort


@pytest.mark.parametrize("kind, abort", [("small", None),
                                         ("unsorted", "malloc(): invalid next->prev_inuse (unsorted)")])
def test_chunk_in_a_bin_but_in_use_by_the_walk(kind, abort):
    free, after, s = small_heap(kind)
    s.poke(after + 8, 0x21)  # PREV_INUSE set again: the walk sees `free` in use
    p = at(problems(s), free, "PREV_INUSE set", "in use")
    assert p.glibc_abort == abort


def laid_out(*plan):
    """A heap of these (size, kind) chunks: their addresses and the built image."""
    b = HeapBuilder()
    addresses = [b.chunk(size, kind) for size, kind in plan]
    return addresses, b.build()


def test_chunk_in_two_bins():
    (_, t, _, f, _), s = laid_out((0x20, None), (0x20, "tcache"), (0x20, None), (0x20, "fast"), (0x20, None))
    # f's fd (safe-linked with its own address) now leads to t: fast[0] f -> t
    s.poke(f + 16, ((f + 16) >> 12) ^ t)
    at(problems(s), t, "two bins", "tcache[0]", "fast[0]")


def two_large():
    """Two chunks in one large bin: 0x460 first, then 0x440."""
    (_, big, _, small, _), s = laid_out((0x20, None), (0x460, "large"), (0x20, None), (0x440, "large"), (0x20, None))
    return big, small, s


def test_large_bin_nextsize_ring():
    big, small, s = two_large()
    s.poke(big + 32, big)  # fd_nextsize of the first chunk should be `small`
    p = at(problems(s), big, "fd_nextsize", f"expected {small:#x}")
    assert p.glibc_abort == "corrupted double-linked list (not small)"


def test_large_bin_out_of_order():
    big, small, s = two_large()
    arena_bins = s.arena + s.layout.malloc_state.offset("bins")
    index = 65  # largebin_index_64(0x440) = 48 + (0x440 >> 6), by hand
    header = arena_bins + 2 * (index - 1) * 8 - 16
    # swap the two chunks in the fd/bk chain: small first, then big
    s.poke(arena_bins + 2 * (index - 1) * 8, small)
    s.poke(arena_bins + 2 * (index - 1) * 8 + 8, big)
    s.poke(small + 16, big)
    s.poke(small + 24, header)
    s.poke(big + 16, header)
    s.poke(big + 24, small)
    at(problems(s), big, "follows a smaller one")


def test_bin_header_bk_is_not_the_last_chunk():
    free, after, s = small_heap("small")
    index = 16  # smallbin_index(0x100) = 0x100 >> 4, by hand
    bk_slot = s.arena + s.layout.malloc_state.offset("bins") + (2 * (index - 1) + 1) * 8
    s.poke(bk_slot, after)  # malloc's victim: an in-use chunk
    s.poke(after + 24, free)  # its bk: free, whose fd is the bin, not `after`
    header = bk_slot - 8 - 16
    p = at(problems(s), header, "the bin's bk", f"{free:#x}")
    assert p.glibc_abort == "malloc(): smallbin double linked list corrupted"


@pytest.mark.parametrize("version", [(2, 31), (2, 36)])
def test_tcache_key_overwritten(version):
    b = HeapBuilder(version)
    b.chunk(0x20)
    chunks = [b.chunk(0x30, "tcache") for _ in range(3)]
    b.chunk(0x20)
    s = b.build()
    s.poke(chunks[1] + 24, 0x4141414141414141)
    p = at(problems(s), chunks[1], "key 0x4141414141414141")
    assert p.glibc_abort is None
    assert [q.address for q in problems(s)] == [chunks[1]]


@pytest.mark.parametrize("word", [8, 4])
def test_tcache_key_without_symbols(word):
    """Without tcache_key's symbol the key is the word of libc's data that an entry's key field
    equals: one tcache chunk is enough, and two entries overwritten alike are both blamed, not
    the one intact entry (what a majority vote would do)."""
    from dataclasses import replace

    from tests.synthetic import TCACHE_KEY, TCACHE_KEY_OFFSET
    key = TCACHE_KEY & ((1 << 8 * word) - 1)
    b = HeapBuilder((2, 36), word)
    b.chunk(0x20)
    chunks = [b.chunk(4 * word * 2, "tcache") for _ in range(3)]
    b.chunk(0x20)
    s = b.build()
    s.anchors = replace(s.anchors, tcache_key=None)
    for chunk in chunks[:2]:
        s.poke(chunk + 3 * word, 0x41414141)
    heap = s.heap()
    found = heap.tcache_key([0x41414141, key])
    assert found is not None and found.value == key and f"{s.libc_base + TCACHE_KEY_OFFSET:#x}" in found.how
    blamed = [p for p in check_arena(heap, heap.main_arena).problems if "key" in p.message]
    assert [p.address for p in blamed] == chunks[:2]
    assert all(f"not the tcache key {key:#x}" in p.message for p in blamed)


def test_tcache_key_single_chunk_and_no_key_in_libc():
    """One tcache chunk, its key overwritten: found by tcache_key's symbol; with neither the
    symbol nor the key in libc's data, nothing is claimed."""
    from dataclasses import replace

    from tests.synthetic import TCACHE_KEY_OFFSET
    b = HeapBuilder((2, 36))
    b.chunk(0x20)
    one = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    s.poke(one + 24, 0x4242424242424242)
    at(problems(s), one, "key 0x4242424242424242", "tcache_key's symbol")
    s.poke(s.libc_base + TCACHE_KEY_OFFSET, 0)
    s.anchors = replace(s.anchors, tcache_key=None)
    assert problems(s) == []


def test_tcache_chunk_of_the_wrong_size():
    b = HeapBuilder()
    b.chunk(0x20)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    b.chunk(0x20)
    s = b.build()
    s.poke(t + 8, 0x51)  # 0x30 -> 0x50: still a valid walk (swallows the next chunk)
    found = problems(s)
    at(found, t, "tcache[1]", "size 0x50, not 0x30")


@pytest.mark.parametrize("version, abort", [((2, 36), "malloc(): corrupted top size"), ((2, 27), None)])
def test_top_size(version, abort):
    b = HeapBuilder(version)
    b.chunk(0x20)
    s = b.build()
    s.poke(s.top + 8, 0xFFFFFFFFFFFFFFFF)
    p = at(problems(s), s.top, "system_mem")
    assert p.glibc_abort == abort


def test_top_short_of_its_heap_end():
    b = HeapBuilder()
    b.chunk(0x20)
    s = b.build()
    s.poke(s.top + 8, (s.top_size - 0x100) | 1)
    at(problems(s), s.top, f"ends at {s.top + s.top_size - 0x100:#x}", f"heap ends at {s.heap_end:#x}")


def test_invalid_size_of_a_fast_chunk():
    """Not freed again (a free chunk); malloc's victim check is fastbin_index(0x28) == 0: passes."""
    b = HeapBuilder()
    b.chunk(0x20)
    f = b.chunk(0x20, "fast")
    b.chunk(0x20)
    s = b.build()
    s.poke(f + 8, 0x28)  # not a multiple of 16
    p = at(problems(s), f, "invalid size")
    assert p.glibc_abort is None


def test_invalid_size_of_a_chunk_in_use_trips_free():
    b = HeapBuilder()
    a = b.chunk(0x20)
    b.chunk(0x20)
    s = b.build()
    s.poke(a + 8, 0x18)
    p = at(problems(s), a, "invalid size")
    assert p.glibc_abort == "free(): invalid size"


def test_problems_are_sorted_and_unique():
    free, after, s = small_heap("small")
    s.poke(after + 8, 0x21)
    s.poke(s.top + 8, 0xFFFFFFFFFFFFFFFF)
    found = problems(s)
    keys = [(p.address, p.message) for p in found]
    assert keys == sorted(set(keys), key=keys.index) and [k[0] for k in keys] == sorted(k[0] for k in keys)


def test_check_views():
    from gdb_heap import render
    from gdb_heap.style import Style
    b = HeapBuilder()
    b.chunk(0x20)
    s = b.build()
    s.poke(s.top + 8, 0xFFFFFFFFFFFFFFFF)
    heap = s.heap()
    report = check_arena(heap, heap.main_arena)
    doc = render.check_doc(report)
    assert doc == {"arena": s.arena, "problems": [
        {"address": s.top, "message": report.problems[0].message, "glibc_abort": "malloc(): corrupted top size",
         "other_paths": [], "maybe_in_progress": False}], "in_progress": []}
    lines = list(render.check_lines(report, Style(False)))
    assert lines[0].startswith(f"main arena {s.arena:#x}: 1 problem (3 chunks walked, 0 chunks in bins checked)")
    assert lines[1] == (f"problem at {s.top:#x}: {report.problems[0].message} "
                        '(glibc would abort: "malloc(): corrupted top size")')
    _, healthy = every_bin_heap()
    heap = healthy.heap()
    assert "no problems found" in next(render.check_lines(check_arena(heap, heap.main_arena), Style(False)))


def test_a_broken_walk_does_not_swallow_the_free_chunks_after_it():
    (a, _, t, _), s = laid_out((0x20, None), (0x20, None), (0x30, "tcache"), (0x20, None))
    s.poke(a + 8, 0x4141414141414140 | 1)  # an aligned, huge size: the walk runs past the heap
    found = problems(s)
    p = at(found, a, "runs")
    assert p.glibc_abort == "double free or corruption (out)"
    assert [q.address for q in found] == [a]  # not one "contains" per free chunk after it


def test_non_main_arena_bit_with_a_readable_heap_info_of_garbage():
    """i386: HEAP_MAX_SIZE is 1 MiB (2 * DEFAULT_MMAP_THRESHOLD_MAX, 512 KiB there), so the
    rounded-down address can be readable (here: the heap's own start); its ar_ptr, 0x6d840e0a, is
    no arena and not mapped: free() faults on the arena it was handed."""
    b = HeapBuilder((2, 36), word=4, sbrk_base=0x56500000)
    b.chunk(0x10)
    victim = b.chunk(0x500)
    b.chunk(0x10)
    s = b.build()
    s.poke(victim + 4, 0x500 | 0x4 | 0x1)
    s.poke(0x56500000, 0x6D840E0A)  # heap_info.ar_ptr is its first field
    p = at(problems(s), victim, "NON_MAIN_ARENA set", "heap_info at 0x56500000", "ar_ptr 0x6d840e0a", "SIGSEGV")
    assert p.glibc_abort is None


def test_non_main_arena_bit_on_a_main_heap_chunk():
    """House of mind: free() of a main-heap chunk with NON_MAIN_ARENA looks for a heap_info at the
    chunk's address rounded down to HEAP_MAX_SIZE (64 MiB on x86-64); the image has nothing
    there, so free() would fault."""
    b = HeapBuilder((2, 36))
    b.chunk(0x20)
    victim = b.chunk(0x500)
    b.chunk(0x20)
    s = b.build()
    s.poke(victim + 8, 0x500 | 0x4 | 0x1)
    base = victim & ~(64 * 1024 * 1024 - 1)
    p = at(problems(s), victim, "NON_MAIN_ARENA set", f"heap_info at {base:#x}", "SIGSEGV")
    assert p.glibc_abort is None


def test_a_listed_chunk_inside_a_chunk_that_crosses_into_the_next_block():
    """The walk's batches are its 64 KiB blocks: a chunk that crosses into the next block ends its
    batch, and a chunk a bin lists inside it, past the block's end, lies before the next batch's
    first chunk: still found inside it."""
    plan = [(0x1000, None)] * 15 + [(0x2000, None), (0x20, "fast"), (0x20, None)]
    addresses, s = laid_out(*plan)
    big, f = addresses[15], addresses[16]
    forged = big + 0x1000
    assert big >> 16 != forged >> 16 and big < forged < big + 0x2000  # past the block big starts in
    s.poke(forged + 8, 0x21)  # a fast chunk's size, and NULL safe-linked after it
    s.poke(forged + 16, (forged + 16) >> 12)
    s.poke(f + 16, ((f + 16) >> 12) ^ forged)  # fast[0]: f -> forged
    at(problems(s), big, "size 0x2000", f"contains {forged:#x}", "fast[0]", "overlapping chunks")
