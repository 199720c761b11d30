"""explain.py on allocator states written by hand: what changed says where a chunk came from or went.

The states are what glibc 2.36 on x86-64 leaves around each call (malloc.c's paths, by hand):
the expected answers are the bins the hand-made states put the chunk in."""

from typing import Dict, Optional

from gdb_heap.explain import Call, State, Syscall, TcacheState, explain
from gdb_heap.layouts import layout_for
from gdb_heap.model import MallocState, bin_at

L = layout_for((2, 36), 8)
ARENA = 0x7ffff7fa8c60
HEAP = 0x555555559000


def arena(top: int, system_mem: int = 0x21000, fast0: int = 0, unsorted: Optional[int] = None) -> MallocState:
    bins = []
    for i in range(1, 128):
        header = bin_at(L, ARENA, i)
        bins += [header, header]
    if unsorted is not None:
        bins[0] = bins[1] = unsorted
    fast = [0] * 10
    fast[0] = fast0
    return MallocState(ARENA, 0, 0, tuple(fast), top, 0, tuple(bins), (0,) * 4, ARENA, 0, 1, system_mem, system_mem)


def state(a: MallocState, counts0: int = 0, head0: int = 0, unsorted=(), n_mmaps: int = 0,
          mmapped: int = 0) -> State:
    counts, heads = [0] * 64, [0] * 64
    counts[0], heads[0] = counts0, head0
    return State({ARENA: a}, n_mmaps, mmapped, TcacheState(HEAP + 0x10, tuple(counts), tuple(heads)),
                 {ARENA: tuple(unsorted)})


def sizes(table: Dict[int, int]):
    return lambda chunk: table.get(chunk)


def test_malloc_from_tcache_and_from_top():
    c = HEAP + 0x290
    before, after = state(arena(HEAP + 0x2b0), 1, c), state(arena(HEAP + 0x2b0))
    why = explain(L, before, after, Call("malloc", [24], c + 16, c + 16), sizes({c: 0x21}))
    assert (why.chunk, why.size, why.from_, why.bin_index) == (c, 0x20, "tcache", 0)
    before, after = state(arena(c)), state(arena(c + 0x20))
    why = explain(L, before, after, Call("malloc", [24], c + 16, c + 16), sizes({c: 0x21}))
    assert (why.from_, why.bin_index, why.text) == ("top", None, "cut from top")
    grown = state(arena(c + 0x20, system_mem=0x42000))
    why = explain(L, before, grown, Call("malloc", [24], c + 16, c + 16, None, [Syscall("brk", [1], 0)]),
                  sizes({c: 0x21}))
    assert why.text == "cut from top after growing the heap"


def test_free_into_tcache_then_fast_when_full():
    c = HEAP + 0x290
    why = explain(L, state(arena(HEAP + 0x400)), state(arena(HEAP + 0x400), 1, c),
                  Call("free", [c + 16], None, None, 0x21), sizes({}))
    assert (why.to, why.bin_index) == ("tcache", 0)
    full = state(arena(HEAP + 0x400), 7, HEAP + 0x2b0)
    why = explain(L, full, state(arena(HEAP + 0x400, fast0=c), 7, HEAP + 0x2b0),
                  Call("free", [c + 16], None, None, 0x21), sizes({}))
    assert (why.to, why.bin_index) == ("fast", 0) and "tcache[0] is full: 7" in why.text


def test_free_merged_backwards_in_unsorted_and_into_top():
    v, w, top = HEAP + 0x8d0, HEAP + 0xde0, HEAP + 0x2000
    before = state(arena(top, unsorted=v), unsorted=[v])
    after = state(arena(top, unsorted=v), unsorted=[v])
    why = explain(L, before, after, Call("free", [w + 16], None, None, 0x511), sizes({v: 0xa21, top: 0x1000}))
    assert (why.to, why.bin_index, why.merged_with) == ("unsorted", 1, [v])
    t = top - 0x610
    why = explain(L, state(arena(top)), state(arena(t)), Call("free", [t + 16], None, None, 0x611),
                  sizes({t: 0x1611}))
    assert (why.to, why.merged_with) == ("top", [top])


def test_mmap_and_munmap_count_what_was_given_back():
    big = 0x7ffff7da1000
    why = explain(L, state(arena(HEAP)), state(arena(HEAP), n_mmaps=1, mmapped=0x31000),
                  Call("malloc", [200000], big + 16, big + 16), sizes({big: 0x31002}))
    assert (why.from_, why.size, why.trimmed) == ("mmap", 0x31000, 0)
    why = explain(L, state(arena(HEAP), n_mmaps=1, mmapped=0x31000), state(arena(HEAP)),
                  Call("free", [big + 16], None, None, 0x31002), sizes({}))
    assert (why.to, why.trimmed) == ("munmap", 0x31000)
