"""pointers.Namer's names of many links at once (heap chunks names a batch's free chunks' links
together): shorts() must say what short() says of each value, one at a time and in order, and
free_links_many() what free_links() says of each chunk.  short() and free_links() are checked by
hand in tests/test_pointers_short.py; the free chunks here are the synthetic heaps' own lists."""

from __future__ import annotations

import random
from array import array
from typing import List

import pytest

from gdb_heap import pointers
from gdb_heap.layouts import layout_for
from gdb_heap.pointers import Namer
from tests.synthetic import Synthetic, every_bin_heap, many_chunks_heap, noncontiguous

H = 0x10


def words(*values: int, order: str = "little") -> bytes:
    return b"".join(v.to_bytes(8, order) for v in values)  # type: ignore[arg-type]


def values_of(s: Synthetic) -> List[int]:
    """Every kind of value a link may hold: free chunks (in and out of address order), in-use
    chunks, user pointers, inner pointers, top, NULL, small numbers, bin headers, wild ones."""
    free = [c.address for c in s.free_chunks()]
    used = [c.address for c in s.chunks if c.state == "in_use"]
    rng = random.Random(7)
    shuffled = rng.sample(free, len(free))
    L = s.layout
    headers = [s.arena + L.malloc_state.offset("bins") + 2 * (i - 1) * s.S - 2 * s.S for i in (1, 2, 16, 64)]
    return (free + shuffled + used[:50] + [a + H for a in free[:20]] + [a + 0x18 for a in used[:20]]
            + [s.top, s.top + H, 0, 0x10, 0xFFF, 0xDEAD0000] + headers + free[::-1])


def one_by_one(s: Synthetic, values: List[int]) -> List[str]:
    n = Namer(s.heap())
    return [n.short(v) for v in values]


@pytest.mark.parametrize("window", [pointers.NEAR_WINDOW, 4])
def test_shorts_say_what_short_says(monkeypatch, window):
    # a window of 4 free chunks each side: nearly every link lies outside the set, a binary search finds it
    monkeypatch.setattr(pointers, "NEAR_WINDOW", window)
    s = many_chunks_heap(3000)
    values = values_of(s)
    expected = one_by_one(s, values)
    free = {c.address for c in s.free_chunks()}
    assert all(e == f"chunk {v:#x}" for v, e in zip(values, expected) if v in free)  # by hand
    assert expected[values.index(0)] == "NULL"
    n = Namer(s.heap())
    first = [c.address for c in s.chunks[:3]]
    assert n.shorts(values, first[0]) == expected
    assert n.shorts(values[::-1], None) == expected[::-1]  # a second call, from the near span the first left
    assert n.shorts([], None) == []


def test_shorts_when_naming_a_value_walks_the_heap():
    """A main heap of two regions: until a walk finds them its span is sbrk_base to top.
    Naming a value may find them (the spans change): the values after it are named as short()
    names them then."""
    s = noncontiguous(many_chunks_heap(200), 0x5555_6000_0000)
    free = [c.address for c in s.free_chunks()]
    used = [c.address for c in s.chunks if c.state == "in_use"]
    gap = s.chunks[-3].address + 0x4000  # past the old top's fenceposts, before the new region
    values = free[:5] + [gap, used[3]] + free[5:10] + [gap] + free[10:]
    expected = one_by_one(s, values)
    n = Namer(s.heap())
    seen = []
    short = n.short

    def spy(value: int) -> str:
        seen.append((value, n._spans_final))
        return short(value)

    n.short = spy  # type: ignore[method-assign]
    named = n.shorts(values, free[0])
    assert named == expected
    assert not seen[0][1] and seen[-1][1]  # the spans changed in the middle


def test_shorts_of_a_listed_chunk_outside_the_heap():
    """A tcache bin that lists a chunk in libc's memory (damage, or a fake chunk): the free
    chunks include it, but it lies in no heap, so short() does not call it a chunk."""
    s = many_chunks_heap(300)
    fake = s.libc_base + 0x100
    s.poke(fake + 8, 0x21)  # size 0x20
    s.poke(fake + 16, (fake + 16) >> 12)  # next NULL, safe-linked
    assert s.tcache is not None
    entries = s.tcache + s.layout.tcache_perthread.offset("entries")  # entries[0]: chunks of 0x20
    counts = s.tcache + s.layout.tcache_perthread.offset("counts")
    s.poke(entries, fake + 16)
    s.poke(counts, 1, 2)
    free = [c.address for c in s.free_chunks()]
    values = free[:3] + [fake] + free[3:6] + [fake + H]
    expected = one_by_one(s, values)
    assert expected[3] == f"{fake:#x}" and expected[-1] == f"{fake + H:#x}"  # a bare address: in no mapping
    n = Namer(s.heap())
    assert fake in n.free_of(n.heap.main_arena)
    assert n.shorts(values, free[0]) == expected


def test_window_slides_up_and_starts_again_elsewhere():
    n = Namer(many_chunks_heap(10).heap())
    a = array("Q", range(0x1000, 0x1000 + 16 * 5000, 16))
    b = array("Q", a)
    for arr, lo, hi in [(a, 10, 200), (a, 50, 260), (a, 260, 300), (a, 400, 900), (a, 100, 150), (a, 100, 150),
                        (b, 100, 150), (b, 120, 5000), (a, 0, 0), (a, 0, 3)]:
        assert n._window(arr, lo, hi) == set(arr[lo:hi])


CASES = [("tcache", 1), ("fast", 1), ("unsorted", 2), ("small", 2), ("large", 2)]


@pytest.mark.parametrize("version", [(2, 36), (2, 31)])
def test_free_links_many_says_what_free_links_says(version):
    b, s = every_bin_heap(version)
    L = s.layout
    chunks = []
    targets = [c.address for c in s.chunks] + [s.arena + 96, 0, 0x10]
    rng = random.Random(3)
    for c in s.chunks:
        kind = c.bin if c.state == "free" else None
        for cut in (16, 8, 0):  # two words, one (no bk for a doubly linked chunk), none
            link = rng.choice(targets)
            # PROTECT_PTR is its own inverse: reveal_ptr stores a link as glibc would
            stored = L.reveal_ptr(c.address + H, link + (H if kind == "tcache" else 0))
            chunks.append((c.address, kind, words(stored, rng.choice(targets))[:cut]))
    expected = [Namer(s.heap()).free_links(*c) for c in chunks]
    assert any(e.startswith("next chunk") for e in expected) and any(e.startswith("fd chunk") for e in expected)
    assert any(" bk " in e for e in expected) and "" in expected
    assert Namer(s.heap()).free_links_many(chunks) == expected
    big = [(a, k, words(*[int.from_bytes(d[i:i + 8], "little") for i in range(0, len(d), 8)], order="big"))
           for a, k, d in chunks]
    assert Namer(s.heap()).free_links_many(big, "big") == expected
    assert Namer(s.heap()).free_links_many([]) == []


@pytest.mark.parametrize("version", [(2, 31), (2, 32), (2, 36)])
def test_reveal_ptrs_is_reveal_ptr_of_each(version):
    L = layout_for(version, 8)
    fields = [0x5555_5555_9000 + 0x30 * i for i in range(300)]
    stored = [f ^ (i * 0x1111) for i, f in enumerate(fields)]
    assert list(L.reveal_ptrs(fields, stored)) == [L.reveal_ptr(f, v) for f, v in zip(fields, stored)]
