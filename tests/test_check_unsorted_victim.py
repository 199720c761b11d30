"""heap check's prediction for malloc's unsorted victim (the bin's bk) when bk is not the last
chunk of the chain: glibc's checks on the victim in _int_malloc's order, each tripped by hand.

glibc 2.29+ (malloc.c, the unsorted loop): size <= 2 * SIZE_SZ or > system_mem: "malloc():
invalid size (unsorted)"; the next chunk's size field < 2 * SIZE_SZ or > system_mem: "malloc():
invalid next size (unsorted)"; prev_size(next) != size: "malloc(): mismatching next->prev_size
(unsorted)"; bck->fd != victim or victim->fd != unsorted_chunks(av): "malloc(): unsorted double
linked list corrupted"; prev_inuse(next): "malloc(): invalid next->prev_inuse (unsorted)".
glibc 2.26-2.28: the size field itself (flags included) <= 2 * SIZE_SZ or > system_mem:
"malloc(): memory corruption"; 2.28 adds bck->fd != victim: "malloc(): corrupted unsorted chunks 3".

The victim V is written inside the free chunk's data (free + 0x40): its fd, its bk B = free + 0x60
(whose fd word, B + 0x10 = free + 0x70, holds V), its next chunk at V + 0x40.
"""

from __future__ import annotations

import pytest

from gdb_heap.check import check_arena
from tests.test_check_model import small_heap

INVALID_SIZE = "malloc(): invalid size (unsorted)"
NEXT_SIZE = "malloc(): invalid next size (unsorted)"
PREV_SIZE = "malloc(): mismatching next->prev_size (unsorted)"
DLL = "malloc(): unsorted double linked list corrupted"
PREV_INUSE = "malloc(): invalid next->prev_inuse (unsorted)"


def predicted(version=(2, 36), size=0x41, fd=None, b_fd=None, next_prev=0x40, next_size=0x20,
              ):
    free, _, s = small_heap("unsorted", version)
    bins = s.arena + s.layout.malloc_state.offset("bins")
    header = bins - 0x10  # bin_at(1): bins[0] less offsetof(fd)
    v, b = free + 0x40, free + 0x60
    s.poke(bins + 8, v)  # the unsorted bin's bk: V, not the chain's last chunk (free)
    s.poke(v + 8, size)
    s.poke(v + 0x10, header if fd is None else fd)
    s.poke(v + 0x18, b)
    s.poke(b + 0x10, v if b_fd is None else b_fd)
    s.poke(v + 0x40, next_prev)
    s.poke(v + 0x48, next_size)
    heap = s.heap()
    found = [p for p in check_arena(heap, heap.main_arena).problems if p.address == header]
    assert len(found) == 1 and "the bin's bk is" in found[0].message, found
    return found[0].glibc_abort


def test_a_victim_glibc_takes_quietly():
    assert predicted() is None


@pytest.mark.parametrize("size, abort", [(0x10, INVALID_SIZE), (0x11, INVALID_SIZE), (0x21, None),
                                         (0x22001, INVALID_SIZE)])
def test_victim_size(size, abort):
    # size 0x20 passes the size check; its next chunk (V + 0x20 = B) then holds 0 as size: too small
    got = predicted(size=size, next_prev=0x20 if size == 0x21 else 0x40)
    assert got == (abort if size != 0x21 else NEXT_SIZE)


def test_victim_size_up_to_system_mem():
    _, _, s = small_heap("unsorted")
    mem = s.heap_end - s.sbrk_base  # the builder's system_mem: the heap's bytes
    # size == system_mem passes the size check (its next chunk lies past the heap: nothing more read)
    assert predicted(size=mem | 1) is None
    assert predicted(size=(mem + 0x10) | 1) == INVALID_SIZE
    assert predicted(next_size=mem) is None  # the next size may be system_mem itself
    assert predicted(next_size=mem + 1) == NEXT_SIZE


@pytest.mark.parametrize("next_size, abort", [(0x8, NEXT_SIZE), (0xF, NEXT_SIZE), (0x10, None),
                                              (0x22000, NEXT_SIZE), (0x21, PREV_INUSE)])
def test_next_size(next_size, abort):
    assert predicted(next_size=next_size) == abort


def test_next_prev_size():
    assert predicted(next_prev=0x50) == PREV_SIZE
    assert predicted(next_prev=0x47) is None  # flag bits of prev_size are not compared


def test_links():
    assert predicted(fd=0x1234) == DLL
    assert predicted(b_fd=0x1234) == DLL


def test_before_2_29():
    assert predicted((2, 28), size=0x10) == "malloc(): memory corruption"
    assert predicted((2, 28), size=0x11, b_fd=0x1234) == "malloc(): corrupted unsorted chunks 3"
    assert predicted((2, 28), size=0x11) is None
    assert predicted((2, 28), size=0x41, next_size=0x8) is None  # no next-chunk checks before 2.29


def test_the_problem_names_both_links():
    free, _, s = small_heap("unsorted")
    bins = s.arena + s.layout.malloc_state.offset("bins")
    v = free + 0x40
    s.poke(bins + 8, v)
    heap = s.heap()
    (p,) = [p for p in check_arena(heap, heap.main_arena).problems if p.address == bins - 0x10]
    assert p.message == f"unsorted: the bin's bk is {v:#x}, but the last chunk on its fd chain is {free:#x}"
    assert p.pointers == (("bk is ", v), ("chain is ", free))


def test_a_link_out_of_the_heaps_is_named():
    free, _, s = small_heap("unsorted")
    out = s.libc_base + 0x100  # readable libc data, outside every heap
    s.poke(free + 0x10, out)  # free's fd
    heap = s.heap()
    (p,) = [p for p in check_arena(heap, heap.main_arena).problems if "links to" in p.message]
    assert p.message == f"unsorted: {free:#x} links to {out:#x}, outside the arena's heaps (a forged or overwritten " \
                        "link)"
    assert p.pointers == (("links to ", out),)
