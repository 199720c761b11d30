"""`heap check`'s problems, exactly (address, whole message, abort), for one damage at a time on a
heap laid out by hand (glibc 2.36, x86-64; addresses as in tests/test_render_text.py):

    0x555555560000  0x290  the tcache_perthread_struct's chunk (user data at 0x555555560010)
    0x555555560290  0x20   in use
    0x5555555602b0  0x30   tcache[1]
    0x5555555602e0  0x20   fastbin[0]
    0x555555560300  0x20   in use
    0x555555560320  0x100  small bin 16 (0x100 / 16)
    0x555555560420  0x20   in use (prev_size 0x100, PREV_INUSE clear)
    0x555555560440  top, 0xbc0 bytes to the page at 0x555555561000 (system_mem 0x1000)
"""

from typing import List

import pytest

from gdb_heap.check import check_arena
from gdb_heap.model import Problem
from tests.synthetic import HeapBuilder, Synthetic

ARENA = 0x7FFFF7E10C80
FIRST, USED, TCACHE, FAST, USED2, SMALL, AFTER, TOP = (0x555555560000, 0x555555560290, 0x5555555602B0,
                                                       0x5555555602E0, 0x555555560300, 0x555555560320,
                                                       0x555555560420, 0x555555560440)
BINS = ARENA + 0x70  # malloc_state: mutex, flags, have_fastchunks (4 each, padded to 16), fastbinsY[10], top,
#                      last_remainder: bins[] at 16 + 80 + 16 = 0x70
BIN16 = BINS + 2 * 15 * 8 - 16  # bin_at(16): its fd/bk pair less the chunk header
FAKE = 0x7FFFF7E11800  # libc data (readable), in no heap: where forged links lead


def heap() -> Synthetic:
    b = HeapBuilder((2, 36), 8)
    for size, kind in ((0x20, None), (0x30, "tcache"), (0x20, "fast"), (0x20, None), (0x100, "small"),
                       (0x20, None)):
        b.chunk(size, kind)
    return b.build()


def problems(s: Synthetic) -> List[Problem]:
    h = s.heap()
    return check_arena(h, h.main_arena).problems


def test_the_layout_and_a_healthy_report():
    s = heap()
    assert [c.address for c in s.chunks] == [FIRST, USED, TCACHE, FAST, USED2, SMALL, AFTER, TOP]
    assert s.layout.malloc_state.offset("bins") == BINS - ARENA
    h = s.heap()
    report = check_arena(h, h.main_arena)
    assert (report.problems, report.chunks, report.listed) == ([], 8, 3)


def test_top_bigger_than_system_mem():
    s = heap()
    s.poke(TOP + 8, 0x2001)
    assert problems(s) == [Problem(TOP, "top chunk 0x555555560440 has size 0x2000, more than the arena's system_mem "
                                        "0x1000 (house of force?)", "malloc(): corrupted top size")]


@pytest.mark.parametrize("size", [0x10, 0xBC8])
def test_top_of_an_invalid_size(size):
    s = heap()
    s.poke(TOP + 8, size | 1)
    assert problems(s) == [Problem(TOP, f"top chunk 0x555555560440 has an invalid size {size:#x}", None)]


def test_top_not_reaching_the_heap_end():
    s = heap()
    s.poke(TOP + 8, 0xBB0 | 1)
    assert problems(s) == [Problem(TOP, "top chunk 0x555555560440 of size 0xbb0 ends at 0x555555560ff0, but its "
                                        "heap ends at 0x555555561000", None)]


def test_top_outside_the_heaps():
    s = heap()
    s.poke(ARENA + s.layout.malloc_state.offset("top"), 0x555555561000)
    found = problems(s)
    assert Problem(0x555555561000, "top 0x555555561000 is outside the arena's heaps", None) in found


def test_first_chunk_with_prev_inuse_clear():
    s = heap()
    s.poke(FIRST + 8, 0x290)
    assert problems(s) == [Problem(FIRST, "chunk 0x555555560000 is the first of its heap but has PREV_INUSE clear",
                                   None)]


@pytest.mark.parametrize("victim, before, state", [(USED2, FAST, "in a fast bin"),
                                                   (FAST, TCACHE, "in use")])  # tcache: glibc counts it in use
def test_prev_inuse_clear_after_a_chunk_not_in_a_regular_bin(victim, before, state):
    """free() of the chunk before goes to its fast bin, or to its tcache bin (room left): it never
    reaches _int_free's (!prev) check, so no abort is predicted."""
    s = heap()
    s.poke(victim + 8, 0x20)
    assert problems(s) == [Problem(victim, f"chunk {victim:#x} has PREV_INUSE clear, but the chunk before it, "
                                           f"{before:#x}, is {state} (not in a regular bin)", None)]


@pytest.mark.parametrize("size, abort", [(0x420, "double free or corruption (!prev)"), (0x410, None)])
def test_prev_inuse_clear_after_an_in_use_chunk_free_merges(size, abort):
    """tcache_bins is 64: csize2tidx(0x410) = (0x410 - 0x11) / 16 = 63 goes to the tcache, 0x420 (64)
    does not and, above max_fast (0x80), reaches the merging path that checks the next chunk's
    PREV_INUSE."""
    b = HeapBuilder((2, 36), 8)
    b.chunk(size)
    after = b.chunk(0x20)
    s = b.build()
    s.poke(after + 8, 0x20)
    assert problems(s) == [Problem(after, f"chunk {after:#x} has PREV_INUSE clear, but the chunk before it, "
                                          f"{USED:#x}, is in use (not in a regular bin)", abort)]


def test_small_chunk_with_prev_inuse_set_after_it():
    s = heap()
    s.poke(AFTER + 8, 0x21)
    assert problems(s) == [Problem(SMALL, "chunk 0x555555560320 is in small[16] but the next chunk "
                                          "0x555555560420 has PREV_INUSE set: the walk sees it in use", None)]


def test_small_chunk_footer_disagrees():
    s = heap()
    s.poke(AFTER, 0x110)
    assert problems(s) == [Problem(SMALL, "chunk 0x555555560320 in small[16] has size 0x100 but the next "
                                          "chunk's prev_size is 0x110", None)]
    # malloc takes a small bin's victim without unlink_chunk: no size vs. prev_size check


def test_forged_links_are_reported_at_the_member_holding_them():
    s = heap()
    s.poke(TCACHE + 16, ((TCACHE + 16) >> 12) ^ (FAKE + 16))  # tcache next, safe-linked
    s.poke(FAKE + 16, (FAKE + 16) >> 12)  # the fake's next: NULL, safe-linked
    found = [p for p in problems(s) if "outside" in p.message]
    assert found == [Problem(TCACHE, f"tcache[1]: {TCACHE:#x} links to {FAKE:#x}, outside any heap "
                                     "(a forged or overwritten link)", None)]


def test_forged_fastbin_head_is_reported_at_fastbinsY():
    s = heap()
    slot = ARENA + s.layout.malloc_state.offset("fastbinsY")  # fastbinsY[0]
    s.poke(slot, FAKE)
    s.poke(FAKE + 8, 0x21)
    s.poke(FAKE + 16, (FAKE + 16) >> 12)  # its fd: NULL, safe-linked
    found = [p for p in problems(s) if "outside" in p.message]
    assert found == [Problem(slot, f"fast[0]: {slot:#x} links to {FAKE:#x}, outside the arena's heaps "
                                   "(a forged or overwritten link)", None)]


def test_forged_small_bin_head_is_reported_at_the_bin_header():
    s = heap()
    fd_slot = BINS + 2 * 15 * 8
    assert s.peek(fd_slot) == SMALL
    fake = FAKE
    s.poke(fake + 8, 0x101)
    s.poke(fake + 16, BIN16)
    s.poke(fake + 24, BIN16)
    s.poke(fd_slot, fake)
    s.poke(fd_slot + 8, fake)
    found = [p for p in problems(s) if "outside" in p.message]
    assert found == [Problem(BIN16, f"small[16]: {BIN16:#x} links to {fake:#x}, outside the arena's heaps "
                                    "(a forged or overwritten link)", None)]


def test_tcache_member_of_the_wrong_size():
    s = heap()
    s.poke(TCACHE + 8, 0x41)
    found = [p for p in problems(s) if p.address == TCACHE and "size" in p.message]
    assert Problem(TCACHE, f"tcache[1]: chunk {TCACHE:#x} has size 0x40, not 0x30", None) in found
