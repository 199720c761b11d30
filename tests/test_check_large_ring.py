"""heap check on a large bin's fd_nextsize/bk_nextsize ring, exact problems (glibc 2.36, x86-64).

Large bin 65 (largebin_index_64(0x440) = 48 + (0x440 >> 6) = 65, by hand) holds 0x460, then two
chunks of 0x440, sorted by decreasing size.  The ring links the first chunk of each size: the
0x460 and the first 0x440 point at each other both ways; the second 0x440 has fd_nextsize NULL.
fd_nextsize is the chunk's fifth word (+0x20), bk_nextsize its sixth (+0x28)."""

from __future__ import annotations

from gdb_heap.check import check_arena
from gdb_heap.model import Problem
from tests.test_check_model import laid_out

NOT_SMALL = "corrupted double-linked list (not small)"


def three_large():
    (_, big, _, one, _, two, _), s = laid_out((0x20, None), (0x460, "large"), (0x20, None), (0x440, "large"),
                                              (0x20, None), (0x440, "large"), (0x20, None))
    return big, one, two, s


def found(s):
    heap = s.heap()
    return check_arena(heap, heap.main_arena).problems


def test_the_built_ring_is_as_glibc_leaves_it():
    big, one, two, s = three_large()
    assert found(s) == []
    assert (s.peek(big + 0x20), s.peek(big + 0x28), s.peek(one + 0x20), s.peek(one + 0x28)) == (one, one, big, big)
    assert s.peek(two + 0x20) == 0


def test_a_second_chunk_of_a_size_with_fd_nextsize_set():
    big, one, two, s = three_large()
    s.poke(two + 0x20, big)
    assert found(s) == [Problem(two, f"large[65]: chunk {two:#x} is not the first of its size, yet its fd_nextsize "
                                     f"is {big:#x} (should be NULL)", NOT_SMALL, ())]
    assert found(s)[0].pointers == (("fd_nextsize is ", big),)  # what render names (not compared above)


def test_a_first_chunk_with_a_wrong_bk_nextsize():
    big, one, two, s = three_large()
    s.poke(one + 0x28, two)
    assert found(s) == [Problem(one, f"large[65]: chunk {one:#x} has fd_nextsize {big:#x} and bk_nextsize {two:#x}, "
                                     f"expected {big:#x} and {big:#x}", NOT_SMALL, (),
                                (("fd_nextsize ", big), ("bk_nextsize ", two)))]
    assert found(s)[0].pointers == (("fd_nextsize ", big), ("bk_nextsize ", two))


def test_a_null_fd_nextsize_is_not_checked_by_glibc():
    big, one, two, s = three_large()
    s.poke(one + 0x20, 0)
    (p,) = found(s)
    assert (p.address, p.glibc_abort) == (one, None)
    assert p.message == (f"large[65]: chunk {one:#x} has fd_nextsize 0x0 and bk_nextsize {big:#x}, expected "
                         f"{big:#x} and {big:#x}")


def test_out_of_order_names_both_sizes():
    big, one, two, s = three_large()
    s.poke(two + 8, 0x451)  # the last chunk grows past the one before it (0x440)
    problems = [p for p in found(s) if "follows a smaller one" in p.message]
    assert [p.message for p in problems] == [
        f"large[65]: chunk {two:#x} of size 0x450 follows a smaller one (0x440); large bins are sorted by "
        "decreasing size"]


def test_three_sizes_make_a_ring_of_three():
    """0x470, 0x460, 0x440 (all bin 65): fd_nextsize goes to the next smaller size, the smallest's
    back to the largest; bk_nextsize the other way."""
    (_, a, _, b, _, c, _), s = laid_out((0x20, None), (0x470, "large"), (0x20, None), (0x460, "large"),
                                        (0x20, None), (0x440, "large"), (0x20, None))
    assert [(s.peek(x + 0x20), s.peek(x + 0x28)) for x in (a, b, c)] == [(b, c), (c, a), (a, b)]
    assert found(s) == []
    s.poke(a + 0x20, c)  # skips b
    (p,) = found(s)
    assert p.message == (f"large[65]: chunk {a:#x} has fd_nextsize {c:#x} and bk_nextsize {c:#x}, "
                         f"expected {b:#x} and {c:#x}")


def test_the_ring_is_read_from_memory_where_the_bin_walk_did_not_keep_it():
    # BinChain.nextsizes None (the bin walk could not read a chunk's nextsize words): heap check
    # reads them itself, and finds the same problem.
    big, one, two, s = three_large()
    s.poke(one + 0x28, two)
    heap = s.heap()
    read_bins = heap.bins

    def bins_without_nextsizes(arena, *kinds):
        chains, problems = read_bins(arena, *kinds)
        for chain in chains:
            chain.nextsizes = None
        return chains, problems

    heap.bins = bins_without_nextsizes
    assert check_arena(heap, heap.main_arena).problems == [
        Problem(one, f"large[65]: chunk {one:#x} has fd_nextsize {big:#x} and bk_nextsize {two:#x}, "
                     f"expected {big:#x} and {big:#x}", NOT_SMALL, ())]
