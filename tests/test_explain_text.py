"""explain.py's words for a free, exact, on states written by hand (tests/test_explain.py's
helpers: glibc 2.36, x86-64, one arena at ARENA, the heap at HEAP)."""

from __future__ import annotations

from gdb_heap.explain import Call, Syscall, explain
from tests.test_explain import HEAP, L, arena, sizes, state

C = HEAP + 0x290


def free(before, after, size_field, table=None, syscalls=()):
    return explain(L, before, after, Call("free", [C + 16], None, None, size_field, list(syscalls)),
                   sizes(table or {}))


def test_into_the_tcache_and_a_fast_bin():
    why = free(state(arena(HEAP + 0x400)), state(arena(HEAP + 0x400), 1, C), 0x21)
    assert (why.chunk, why.size, why.to, why.bin_index, why.text) == (C, 0x20, "tcache", 0,
                                                                      "into tcache[0], now holding 1")
    full = state(arena(HEAP + 0x400), 7, HEAP + 0x2B0)
    why = free(full, state(arena(HEAP + 0x400, fast0=C), 7, HEAP + 0x2B0), 0x21)
    assert (why.to, why.bin_index, why.text) == ("fast", 0, "into fast[0] (tcache[0] is full: 7)")
    # the tcache bin not full (yet the chunk went to a fast bin): no note
    why = free(state(arena(HEAP + 0x400)), state(arena(HEAP + 0x400, fast0=C)), 0x21)
    assert why.text == "into fast[0]"


def test_an_mmapped_chunk():
    why = free(state(arena(HEAP), n_mmaps=1, mmapped=0x31000), state(arena(HEAP)), 0x31002)
    assert (why.to, why.size, why.text) == (
        "munmap", 0x31000, "unmapped (an mmapped chunk is given back to the kernel whole); 0x31000 bytes given "
                           "back to the kernel")


def test_merged_into_top_both_ways():
    old_top = C + 0x20
    # the chunk before top: top now starts at the chunk
    why = free(state(arena(old_top)), state(arena(C)), 0x21, {C: 0x1001})
    assert (why.to, why.merged_with, why.text) == ("top", [old_top],
                                                   f"merged into top (which started at {old_top:#x})")
    # a free chunk before it (at HEAP + 0x250) merged too: top starts there now
    before_free = HEAP + 0x250
    why = free(state(arena(old_top)), state(arena(before_free)), 0x21, {before_free: 0x1041})
    assert (why.to, why.merged_with) == ("top", [before_free, old_top])
    assert why.text == (f"merged into top (which started at {old_top:#x}), merged with the free chunk before it "
                        f"at {before_free:#x}")
    # inside top, but top did not start right after it: merged backwards only
    why = free(state(arena(HEAP + 0x1000)), state(arena(before_free)), 0x21, {before_free: 0x2001})
    assert (why.merged_with, why.text) == ([before_free], f"merged into top, merged with the free chunk before "
                                                          f"it at {before_free:#x}")


def test_into_the_unsorted_bin_merged_both_sides_and_consolidation():
    v = HEAP + 0x250  # a free chunk before C; the merged chunk runs past C + 0x20
    after = state(arena(HEAP + 0x2000, unsorted=v), unsorted=[v])
    why = free(state(arena(HEAP + 0x2000, fast0=HEAP + 0x600)), after, 0x21, {v: 0x101})
    assert (why.to, why.bin_index, why.merged_with) == ("unsorted", 1, [v, C + 0x20])
    assert why.text == f"into the unsorted bin, merged with {v:#x}, {C + 0x20:#x}; fast bins consolidated"
    alone = state(arena(HEAP + 0x2000, unsorted=C), unsorted=[C])
    why = free(state(arena(HEAP + 0x2000)), alone, 0x91, {C: 0x91})
    assert (why.merged_with, why.text) == ([], "into the unsorted bin")


def test_nowhere_the_trace_reads_and_what_went_back():
    why = free(state(arena(HEAP + 0x2000)), state(arena(HEAP + 0x2000)), 0x421)
    assert (why.to, why.text) == (None, "not in any bin head the trace reads")
    why = free(state(arena(HEAP + 0x2000)), state(arena(HEAP + 0x2000)), 0x421,
               syscalls=[Syscall("madvise", [HEAP + 0x1000, 0x1000, 4], 0)])
    assert (why.trimmed, why.text) == (0x1000, "not in any bin head the trace reads; 0x1000 bytes given back to "
                                               "the kernel")
    # MADV_FREE (8) counts, another advice or a failed call does not
    assert free(state(arena(HEAP)), state(arena(HEAP)), 0x421,
                syscalls=[Syscall("madvise", [HEAP, 0x2000, 8], 0)]).trimmed == 0x2000
    assert free(state(arena(HEAP)), state(arena(HEAP)), 0x421,
                syscalls=[Syscall("madvise", [HEAP, 0x2000, 3], 0), Syscall("madvise", [HEAP, 0x2000, 4], -1),
                          Syscall("madvise", [HEAP, 0x2000], 0)]).trimmed == 0
    shrunk = free(state(arena(HEAP + 0x400, system_mem=0x21000)), state(arena(HEAP + 0x400, system_mem=0x20000)),
                  0x421)
    assert shrunk.trimmed == 0x1000


def test_malloc_trim_and_unreadable_headers():
    grown, shrunk = state(arena(HEAP + 0x400, system_mem=0x22000)), state(arena(HEAP + 0x400, system_mem=0x21000))
    trim = explain(L, grown, shrunk, Call("malloc_trim", [0], 1, None), sizes({}))
    assert (trim.chunk, trim.trimmed, trim.text) == (None, 0x1000, "gave 0x1000 bytes back to the kernel")
    assert explain(L, shrunk, shrunk, Call("malloc_trim", [0], 0, None), sizes({})).text == "nothing to give back"
    why = explain(L, shrunk, shrunk, Call("free", [C + 16], None, None, None), sizes({}))
    assert (why.chunk, why.text) == (C, "the chunk's header was not readable")
    why = explain(L, shrunk, shrunk, Call("malloc", [24], C + 16, C + 16), sizes({}))
    assert (why.chunk, why.text) == (C, "the chunk's header is not readable")
    # realloc(p, 0) frees p
    why = explain(L, state(arena(HEAP + 0x400)), state(arena(HEAP + 0x400), 1, C),
                  Call("realloc", [C + 16, 0], 0, None, 0x21), sizes({}))
    assert (why.to, why.text) == ("tcache", "into tcache[0], now holding 1")


def test_came_from_a_split_and_a_grown_heap():
    from tests.test_explain import arena_with, malloc
    top, c = HEAP + 0x2000, HEAP + 0x400
    rest = c + 0x20
    # small[16]'s head split: its rest is now the unsorted bin's only chunk
    after = state(arena(top, unsorted=rest), unsorted=[rest])
    why = malloc(state(arena_with(top, heads={16: c})), after, c, {c: 0x21, rest: 0xE1})
    assert (why.from_, why.bin_index, why.text) == (
        "small", 16, f"taken from small[16], split; the remainder {rest:#x} (0xe0 bytes) left in the unsorted bin")
    # inside a chain and split: the bin of the whole chunk (0x20 + 0x4e0 = 0x500: large[68])
    why = malloc(state(arena(top)), after, c, {c: 0x21, rest: 0x4E1})
    assert (why.from_, why.bin_index, why.text) == (
        "large", 68, f"taken from large[68] (a 0x500-byte chunk inside its chain), split; the remainder {rest:#x} "
                     "(0x4e0 bytes) left in the unsorted bin")
    grown = state(arena(top + 0x20, system_mem=0x22000))
    assert malloc(state(arena(top)), grown, top, {top: 0x21}).text == "cut from top after growing the heap"
    same = state(arena(top + 0x20))
    assert malloc(state(arena(top)), same, top, {top: 0x21},
                  [Syscall("mprotect", [HEAP, 0x1000, 3], 0)]).text == "cut from top after growing the heap"
    assert malloc(state(arena(top)), same, top, {top: 0x21},
                  [Syscall("munmap", [HEAP, 0x1000], 0)]).text == "cut from top"  # no brk or mprotect
