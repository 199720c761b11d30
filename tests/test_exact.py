"""Exact expectations written here from outside the code: glibc's messages as literal strings
(the table of messages by release is tests/test_glibc_checks.py), version boundaries on both
sides, request ranges and usable sizes by hand arithmetic, `heap chunk`'s lines verbatim."""

from typing import List, Optional, Tuple

import pytest

from gdb_heap import heuristics, render
from gdb_heap.check import check_arena
from gdb_heap.layouts import layout_for
from gdb_heap.heap import Where
from gdb_heap.mmapped import mmapped_span
from gdb_heap.model import Chunk, Problem
from gdb_heap.views import ChunkView
from gdb_heap.style import Style
from tests.synthetic import TCACHE_KEY, HeapBuilder, Synthetic, every_bin_heap


def problems(s: Synthetic) -> List[Problem]:
    heap = s.heap()
    return check_arena(heap, heap.main_arena).problems


def aborts_at(s: Synthetic, address: int) -> List[Optional[str]]:
    return [p.glibc_abort for p in problems(s) if p.address == address]


def wrong_bk(kind: str, version=(2, 36), which: int = 1) -> Tuple[int, Synthetic]:
    """A chunk of a regular bin whose bk points at itself (not at the chunk before it)."""
    _, s = every_bin_heap(version, 8)
    chain = next(c for c in s.chains if c.kind == kind and len(c.chunks) >= 3)
    victim = chain.chunks[which]
    s.poke(victim + 24, victim)
    return victim, s


def test_forged_bk_of_the_small_bins_victim():
    """malloc takes victim = last(bin) and checks bck->fd != victim; the chunks it stashes into the
    tcache after it are not checked, so only the last chunk's bk is judged."""
    victim, s = wrong_bk("small", which=-1)
    assert aborts_at(s, victim) == ["malloc(): smallbin double linked list corrupted"]
    victim, s = wrong_bk("small", which=1)
    assert aborts_at(s, victim) == [None]


LARGE_BK = ("sorting a chunk into its large bin", "malloc(): largebin double linked list corrupted (bk)")


@pytest.mark.parametrize("version, other", [((2, 36), (LARGE_BK,)), ((2, 29), ())])
def test_forged_bk_in_a_large_bin(version, other):
    """Taking the chunk out unlinks it ("corrupted double-linked list"); sorting another chunk in
    next to it checks fwd->bk->fd, a message 2.30 added: 2.29 names no second path."""
    victim, s = wrong_bk("large", version)
    assert [(p.glibc_abort, p.other_paths) for p in problems(s) if p.address == victim] == [
        ("corrupted double-linked list", other)]


def test_forged_unsorted_bk_message():
    victim, s = wrong_bk("unsorted")
    assert aborts_at(s, victim) == ["malloc(): unsorted double linked list corrupted"]


@pytest.mark.parametrize("kind, abort", [("unsorted", "malloc(): unsorted double linked list corrupted"),
                                         ("small", None),
                                         ("large", None)])
def test_bin_header_bk_not_the_last_chunk(kind, abort):
    """The header's bk names the first chunk: malloc takes it as victim. Its bk is the header, whose
    fd is the victim, so the small bin's check passes (the other chunks are lost); the unsorted
    loop also checks victim->fd == the bin, which it is not."""
    _, s = every_bin_heap((2, 36), 8)
    chain = next(c for c in s.chains if c.kind == kind and len(c.chunks) >= 2)
    bk_slot = s.arena + s.layout.malloc_state.offset("bins") + 2 * (chain.index - 1) * 8 + 8
    s.poke(bk_slot, chain.chunks[0])
    header = bk_slot - 8 - 16  # bin_at(i): the slot pair less the chunk header's two words
    assert aborts_at(s, header) == [abort]


@pytest.mark.parametrize("version, abort", [((2, 36), "malloc(): unaligned fastbin chunk detected 3"),
                                            ((2, 31), None)])
def test_fastbin_link_unaligned(version, abort):
    _, s = every_bin_heap(version, 8)
    chain = next(c for c in s.chains if c.kind == "fast" and len(c.chunks) >= 2)
    first = chain.chunks[0]
    target = chain.chunks[1] + 8  # 8 past a chunk: not 16-aligned
    field = first + 16
    s.poke(field, ((field >> 12) ^ target) if version >= (2, 32) else target)
    assert [p.glibc_abort for p in problems(s) if "not aligned" in p.message] == [abort]


@pytest.mark.parametrize("version, abort", [((2, 36), "malloc(): unaligned tcache chunk detected"),
                                            ((2, 31), None)])
def test_tcache_link_unaligned(version, abort):
    _, s = every_bin_heap(version, 8)
    chain = next(c for c in s.chains if c.kind == "tcache" and len(c.chunks) >= 2)
    field = chain.chunks[0] + 16  # tcache next is stored in the user data
    target = chain.chunks[1] + 16 + 8
    s.poke(field, ((field >> 12) ^ target) if version >= (2, 32) else target)
    assert [p.glibc_abort for p in problems(s) if "not aligned" in p.message] == [abort]


def test_fastbin_wrong_size_message():
    _, s = every_bin_heap((2, 36), 8)
    chain = next(c for c in s.chains if c.kind == "fast")
    victim = chain.chunks[0]
    s.poke(victim + 8, (chain.size + 16) | 1)
    assert "malloc(): memory corruption (fast)" in aborts_at(s, victim)


# -- 2.42+: the tcache counts from mp_.tcache_count ------------------------------------------------

@pytest.mark.parametrize("word", [8, 4])
def test_2_42_count_is_tcache_count_minus_num_slots(word):
    """glibc.malloc.tcache_count=3: num_slots[i] starts at 3; two chunks freed leave 1."""
    b = HeapBuilder((2, 42), word, tcache_count=3)
    size = 0x30 if word == 8 else 0x20
    b.chunk(0x20)
    t1 = b.chunk(size, "tcache")
    b.chunk(0x20)
    t2 = b.chunk(size, "tcache")
    b.chunk(0x20)
    s = b.build()
    L = s.layout
    off, csize, _ = L.tcache_perthread.fields[L.counts_field]
    index = 1
    assert s.tcache is not None
    assert s.peek(s.tcache + off + index * csize, csize) == 1  # 3 - 2, as glibc leaves it
    heap = s.heap()
    chains, found = heap.bins(heap.main_arena, ("tcache",))
    (chain,) = chains
    assert (chain.index, chain.count, chain.chunks) == (index, 2, [t2, t1])
    assert found == [] and problems(s) == []


def test_2_41_count_is_counts():
    b = HeapBuilder((2, 41), 8, tcache_count=3)
    b.chunk(0x20)
    b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    (chain,), _ = heap.bins(heap.main_arena, ("tcache",))
    assert chain.count == 1


# -- the random tcache key from 2.34 ------------------------------------------------------------

@pytest.mark.parametrize("version", [(2, 33), (2, 34)])
def test_tcache_key_rule_on_both_sides_of_2_34(version):
    """Up to 2.33 e->key is the tcache struct; from 2.34 a random tcache_key: both healthy."""
    _, s = every_bin_heap(version, 8)
    assert problems(s) == []


def test_2_33_single_overwritten_key_is_found():
    """2.33: the key must be the tcache struct, even for a lone entry (no majority needed)."""
    b = HeapBuilder((2, 33), 8)
    b.chunk(0x20)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    s.poke(t + 24, 0x4141414141414141)
    (p,) = problems(s)
    assert p.address == t and "0x4141414141414141" in p.message


def test_2_34_overwritten_key_is_found_by_the_majority():
    _, s = every_bin_heap((2, 34), 8)
    chain = next(c for c in s.chains if c.kind == "tcache" and len(c.chunks) >= 3)
    s.poke(chain.chunks[1] + 24, 0x4141414141414141)
    (p,) = problems(s)
    assert p.address == chain.chunks[1] and f"{TCACHE_KEY:#x}" in p.message


@pytest.mark.parametrize("truth", [(2, 34), (2, 33)])
def test_version_narrowed_by_the_key_on_both_sides(truth):
    """A 2.34 image's random keys rule out 2.33; a 2.33 image's keys (the tcache struct itself, which
    a random key is not) rule out 2.34."""
    _, s = every_bin_heap(truth, 8)
    got = heuristics.narrow_versions(s.reader(), 8, [(2, 33), (2, 34)], s.sbrk_base)
    assert got == [truth]


# -- heap chunk's lines, verbatim ---------------------------------------------------------------

def detail(c: Chunk, version=(2, 36), word=8) -> List[str]:
    """The lines of `heap chunk` for `c`, its view made as views.chunk_view makes it."""
    layout = layout_for(version, word)
    where = Where(c.user_address, c.address, c.size_field, 2 * word, None, "mmapped" if c.is_mmapped else "in_use")
    view = ChunkView(where, c, layout.mmapped_requests_for(c.size) if c.is_mmapped else layout.requests_for(c.size))
    if c.is_mmapped and c.prev_size is not None:
        start = c.address - c.prev_size
        view.mapping = (start, start + mmapped_span(layout, c.prev_size, c.size))
    return list(render.chunk_detail_lines(view, layout, Style(False)))


def test_chunk_size_line_names_every_flag():
    c = Chunk(0x7FFFF0000A00, 0x105, "in_use", None, None, 8, 0)
    lines = detail(c)
    assert "  size          0x100 (256 bytes; field 0x105 = 0x100 | PREV_INUSE | NON_MAIN_ARENA)" in lines
    # usable: 0x100 - SIZE_SZ; requests: n + 8 rounded up to 16 is 0x100 for n = 233..248
    assert "  user data     0x7ffff0000a10, 248 usable bytes" in lines
    assert any(line.startswith("  requests      malloc(233) to malloc(248) give a chunk") for line in lines)


def test_chunk_size_line_without_flags_and_i386():
    c = Chunk(0x56560000, 0x20, "in_use", None, None, 4, 0)
    lines = detail(c, word=4)
    assert "  size          0x20 (32 bytes; field 0x20 = 0x20 | 0)" in lines
    # i386: n + 4 rounded up to 16 is 0x20 for n = 13..28
    assert any(line.startswith("  requests      malloc(13) to malloc(28) give a chunk") for line in lines)
    assert "  user data     0x56560008, 28 usable bytes" in lines


def test_minimum_chunk_requests_start_at_zero():
    lines = detail(Chunk(0x1000, 0x21, "in_use", None, None, 8, 0))
    assert any(line.startswith("  requests      malloc(0) to malloc(24) give a chunk") for line in lines)


def test_mmapped_chunk_lines():
    """malloc(200000) on x86-64 2.36: request2size 200016, + SIZE_SZ, page-rounded: 0x31000.
    The same mapping comes from every n with ALIGN_UP(request2size(n) + 8, 4096) == 0x31000:
    request2size(n) from 196608 to 200688, so n from 196585 to 200680."""
    c = Chunk(0x7FFFF7DC7000, 0x31002, "in_use", None, None, 8, 0)
    lines = detail(c)
    assert "  size          0x31000 (200704 bytes; field 0x31002 = 0x31000 | IS_MMAPPED)" in lines
    assert "  user data     0x7ffff7dc7010, 200688 usable bytes" in lines
    assert any(line.startswith("  mapping       0x7ffff7dc7000-0x7ffff7df8000 (196.0 KiB)") for line in lines)
    assert any(line.startswith("  requests      malloc(196585) to malloc(200680) give a mapping") for line in lines)
