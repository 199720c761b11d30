"""The table of glibc's abort messages against glibc's own source.

Each row's text is copied from glibc's malloc/malloc.c, with the first and last release whose
malloc.c prints it, found by reading the tags glibc-2.26 .. glibc-2.42 and master of 2026-01-20
(the 2.43 development tree; None: still printed there).
"""

from typing import Optional, Tuple

import pytest

from gdb_heap import glibc_checks
from gdb_heap.layouts import layout_for
from gdb_heap.model import read_fastbins
from tests.synthetic import every_bin_heap

Version = Tuple[int, int]
ROWS = [
    ("TCACHE_UNALIGNED", "malloc(): unaligned tcache chunk detected", (2, 32), None),
    ("FASTBIN_UNALIGNED_REMOVE", "malloc(): unaligned fastbin chunk detected", (2, 32), (2, 42)),
    ("FASTBIN_UNALIGNED_VICTIM", "malloc(): unaligned fastbin chunk detected 2", (2, 32), (2, 42)),
    ("FASTBIN_UNALIGNED_STASH", "malloc(): unaligned fastbin chunk detected 3", (2, 32), (2, 42)),
    ("FASTBIN_VICTIM_SIZE", "malloc(): memory corruption (fast)", (2, 26), (2, 42)),
    ("FASTBIN_STASH_SIZE", "malloc(): chunk size mismatch in fastbin", (2, 42), (2, 42)),
    ("SMALLBIN_DLL", "malloc(): smallbin double linked list corrupted", (2, 26), None),
    ("UNSORTED_MEMORY_CORRUPTION", "malloc(): memory corruption", (2, 26), (2, 28)),
    ("UNSORTED_INVALID_SIZE", "malloc(): invalid size (unsorted)", (2, 29), None),
    ("UNSORTED_INVALID_NEXT_SIZE", "malloc(): invalid next size (unsorted)", (2, 29), None),
    ("UNSORTED_PREV_SIZE", "malloc(): mismatching next->prev_size (unsorted)", (2, 29), None),
    ("UNSORTED_DLL", "malloc(): unsorted double linked list corrupted", (2, 29), None),
    ("UNSORTED_NEXT_PREV_INUSE", "malloc(): invalid next->prev_inuse (unsorted)", (2, 29), None),
    ("UNSORTED_REMOVE", "malloc(): corrupted unsorted chunks 3", (2, 28), (2, 37)),
    ("LARGEBIN_NEXTSIZE", "malloc(): largebin double linked list corrupted (nextsize)", (2, 30), None),
    ("LARGEBIN_BK", "malloc(): largebin double linked list corrupted (bk)", (2, 30), None),
    ("UNSORTED_INSERT_MALLOC", "malloc(): corrupted unsorted chunks", (2, 26), None),
    ("UNSORTED_INSERT_MALLOC_2", "malloc(): corrupted unsorted chunks 2", (2, 26), None),
    ("TOP_SIZE", "malloc(): corrupted top size", (2, 29), None),
    ("UNLINK_PREV_SIZE", "corrupted size vs. prev_size", (2, 26), None),
    ("UNLINK_DLL", "corrupted double-linked list", (2, 26), None),
    ("UNLINK_NEXTSIZE", "corrupted double-linked list (not small)", (2, 26), None),
    ("CONSOLIDATE_UNALIGNED", "malloc_consolidate(): unaligned fastbin chunk detected", (2, 32), (2, 42)),
    ("CONSOLIDATE_SIZE", "malloc_consolidate(): invalid chunk size", (2, 27), (2, 42)),
    ("CONSOLIDATE_PREV_SIZE", "corrupted size vs. prev_size in fastbins", (2, 29), (2, 42)),
    ("FREE_INVALID_POINTER", "free(): invalid pointer", (2, 26), None),
    ("FREE_INVALID_SIZE", "free(): invalid size", (2, 26), None),
    ("TCACHE_DOUBLE_FREE", "free(): double free detected in tcache 2", (2, 29), None),
    ("TCACHE_FREE_UNALIGNED", "free(): unaligned chunk detected in tcache 2", (2, 32), None),
    ("TCACHE_FREE_TOO_MANY", "free(): too many chunks detected in tcache", (2, 33), None),
    ("FREE_FAST_NEXT_SIZE", "free(): invalid next size (fast)", (2, 26), (2, 42)),
    ("FREE_FASTTOP", "double free or corruption (fasttop)", (2, 26), (2, 42)),
    ("FREE_FAST_ENTRY", "invalid fastbin entry (free)", (2, 26), (2, 42)),
    ("FREE_TOP", "double free or corruption (top)", (2, 26), None),
    ("FREE_OUT", "double free or corruption (out)", (2, 26), None),
    ("FREE_PREV", "double free or corruption (!prev)", (2, 26), None),
    ("FREE_NEXT_SIZE", "free(): invalid next size (normal)", (2, 26), None),
    ("FREE_CONSOLIDATE_PREV_SIZE", "corrupted size vs. prev_size while consolidating", (2, 29), None),
    ("UNSORTED_INSERT_FREE", "free(): corrupted unsorted chunks", (2, 26), None),
    ("SMALLBIN_INSERT_FREE", "free(): chunks in smallbin corrupted", (2, 41), None),
    ("MUNMAP_INVALID_POINTER", "munmap_chunk(): invalid pointer", (2, 26), None),
    ("MREMAP_INVALID_POINTER", "mremap_chunk(): invalid pointer", (2, 29), None),
    ("REALLOC_INVALID_POINTER", "realloc(): invalid pointer", (2, 26), None),
    ("REALLOC_OLD_SIZE", "realloc(): invalid old size", (2, 26), None),
    ("REALLOC_NEXT_SIZE", "realloc(): invalid next size", (2, 26), None),
    ("TCACHE_SHUTDOWN_UNALIGNED", "tcache_thread_shutdown(): unaligned tcache chunk detected", (2, 32), None),
    ("MEMALIGN_UNALIGNED", "_int_memalign(): unaligned chunk detected", (2, 38), (2, 38)),
    ("MALLINFO_UNALIGNED", "int_mallinfo(): unaligned fastbin chunk detected", (2, 32), (2, 42)),
    ("MALLOC_INFO_UNALIGNED", "__malloc_info(): unaligned fastbin chunk detected", (2, 32), (2, 42)),
    ("SBRK_ADJUSTED", "break adjusted to free malloc space", (2, 26), None),]


def before(v: Version) -> Version:
    return (2, 42) if v == (2, 43) else (v[0], v[1] - 1)


def after(v: Version) -> Version:
    return (v[0], v[1] + 1)


@pytest.mark.parametrize("name, text, first, last", ROWS)
def test_each_message_is_printed_from_its_first_to_its_last_release(name, text, first, last):
    assert glibc_checks.text(name, first) == text
    assert glibc_checks.text(name, last or (2, 44)) == text
    if first > (2, 26):
        assert glibc_checks.text(name, before(first)) is None
    if last is not None:
        assert glibc_checks.text(name, after(last)) is None


def test_the_table_holds_each_message_once():
    assert sorted(m.name for m in glibc_checks.MESSAGES) == sorted(r[0] for r in ROWS)
    assert len({m.text for m in glibc_checks.MESSAGES}) == len(ROWS)
    assert all(m.paths for m in glibc_checks.MESSAGES)


@pytest.mark.parametrize("version, want", [((2, 36), "malloc(): unsorted double linked list corrupted"),
                                           ((2, 28), "malloc(): corrupted unsorted chunks 3"), ((2, 27), None)])
def test_first_of_checks_in_order(version, want):
    assert glibc_checks.first(version, "UNSORTED_DLL", "UNSORTED_REMOVE") == want


# A misaligned pointer in a fast bin: _int_malloc checks the bin's head (victim) with
# "... detected 2" and each chunk it stashes into the tcache after it with "... detected 3";
# none of them before 2.32 nor after 2.42 (no fast bins).
@pytest.mark.parametrize("version, where, want", [
    ((2, 36), "head", "malloc(): unaligned fastbin chunk detected 2"),
    ((2, 32), "head", "malloc(): unaligned fastbin chunk detected 2"),
    ((2, 42), "head", "malloc(): unaligned fastbin chunk detected 2"),
    ((2, 36), "member", "malloc(): unaligned fastbin chunk detected 3"),
    ((2, 32), "member", "malloc(): unaligned fastbin chunk detected 3"),
    ((2, 42), "member", "malloc(): unaligned fastbin chunk detected 3")])
def test_unaligned_fastbin_link(version, where, want: Optional[str]):
    _, s = every_bin_heap(version, 8)
    layout = layout_for(version, 8)
    c = s.chain("fast", 1).chunks
    heap = s.heap()
    state = heap.main_arena.state
    slot = state.address + layout.malloc_state.offset("fastbinsY") + 8
    if where == "head":  # fastbinsY[1] is not safe-linked
        s.poke(slot, c[0] + 8)
        member = slot
    else:  # c[0]'s fd, safe-linked with its own address, now reveals a misaligned pointer
        s.poke(c[0] + 16, ((c[0] + 16) >> 12) ^ (c[1] + 8))
        member = c[0]
    state = s.heap().main_arena.state
    chains = read_fastbins(s.heap().reader, layout, state, fill=7)
    problems = [p for chain in chains for p in chain.problems]
    assert [(p.address, p.glibc_abort) for p in problems] == [(member, want)]
