"""explain.py on allocator states written by hand: what changed says where a chunk came from or went.

The states are what glibc 2.36 on x86-64 leaves around each call (malloc.c's paths, by hand):
the expected answers are the bins the hand-made states put the chunk in."""

from dataclasses import replace
from typing import Dict, Optional

from gdb_heap.explain import (UNSORTED_READ, Call, Chain, Record, State, Syscall, TcacheState, Why, call_text, explain,
                              record_lines, syscall_text)
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


# -- the words: calls, system calls, records ------------------------------------------------------

def test_call_text():
    assert call_text(Call("malloc", [24], 0x5555555592a0, 0x5555555592a0)) == "malloc(24) = 0x5555555592a0"
    assert call_text(Call("free", [0x5555555592a0], None, None)) == "free(0x5555555592a0)"
    assert call_text(Call("realloc", [0x5555555592a0, 48], 0x5555555592c0, 0x5555555592c0)) == \
        "realloc(0x5555555592a0, 48) = 0x5555555592c0"
    assert call_text(Call("calloc", [3, 8], None, None)) == "calloc(3, 8) = ?"
    assert call_text(Call("malloc", [1 << 40], 0, None)) == "malloc(1099511627776) = 0x0"
    assert call_text(Call("posix_memalign", [0x7fffffffe0a8, 64, 100], 0, 0x555555559300)) == \
        "posix_memalign(0x7fffffffe0a8, 64, 100) = 0 (*memptr = 0x555555559300)"
    assert call_text(Call("posix_memalign", [0x7fffffffe0a8, 64, 1 << 50], 12, None)) == \
        "posix_memalign(0x7fffffffe0a8, 64, 1125899906842624) = 12"
    assert call_text(Call("malloc_trim", [0], 1, None)) == "malloc_trim(0) = 1"


def test_syscall_text():
    # addresses in hex; small numbers (lengths, flags, results) in decimal, big ones in hex
    assert syscall_text(Syscall("brk", [0], 0x55555557a000)) == "brk(0x0) = 0x55555557a000"
    assert syscall_text(Syscall("mmap", [0, 0x31000, 3, 34, 0xffffffff, 0], 0x7ffff7da1000)) == \
        "mmap(0x0, 0x31000, 3, 34, 0xffffffff, 0) = 0x7ffff7da1000"
    assert syscall_text(Syscall("munmap", [0x7ffff7da1000, 4096], 0)) == "munmap(0x7ffff7da1000, 4096) = 0"
    assert syscall_text(Syscall("madvise", [0x555555560000, 0x10000, 4], None)) == \
        "madvise(0x555555560000, 0x10000, 4) = ?"
    assert syscall_text(Syscall("other", [65535, 65536], 65535)) == "other(65535, 0x10000) = 65535"


def test_record_lines_and_doc():
    c = HEAP + 0x290
    call = Call("malloc", [24], c + 16, c + 16, None, [Syscall("brk", [0], 0x55555557a000)])
    why = Why(c, 0x20, "top", None, None, [], 0, "cut from top")
    r = Record(7, 1, 4242, call, "main", why)
    assert record_lines(r) == [
        "    7  thread 1 (LWP 4242)  malloc(24) = 0x5555555592a0  from main",
        "       chunk 0x555555559290 size 0x20: cut from top",
        "       syscall brk(0x0) = 0x55555557a000",
    ]
    assert r.doc() == {"seq": 7, "thread": 1, "lwp": 4242, "call": "malloc", "args": [24], "result": c + 16,
                       "caller": "main", "chunk": c, "size": 0x20, "from": "top", "to": None, "bin_index": None,
                       "merged_with": [], "trimmed": 0,
                       "syscalls": [{"name": "brk", "args": [0], "result": 0x55555557a000}], "why": "cut from top"}
    bare = Record(12345, 2, 9, Call("malloc_trim", [0], 0, None), None, Why(text="nothing to give back"))
    assert record_lines(bare) == ["12345  thread 2 (LWP 9)  malloc_trim(0) = 0", "       nothing to give back"]
    quiet = Record(1, 1, 1, Call("free", [0], None, None), None, Why())
    assert record_lines(quiet) == ["    1  thread 1 (LWP 1)  free(0x0)"]
    assert record_lines(Record(1, 1, 1, call, None, Why(c, None, text="x")))[1] == "       chunk 0x555555559290: x"


# -- realloc --------------------------------------------------------------------------------------

def test_realloc_in_place():
    c = HEAP + 0x290
    s = state(arena(HEAP + 0x400))
    grown = explain(L, s, s, Call("realloc", [c + 16, 40], c + 16, c + 16, 0x21), sizes({c: 0x31}))
    assert (grown.chunk, grown.size, grown.from_, grown.text) == (
        c, 0x30, None, "in place, grown into the next chunk 0x5555555592b0: 0x20 -> 0x30")
    into_top = state(arena(c + 0x20))
    why = explain(L, into_top, s, Call("realloc", [c + 16, 40], c + 16, c + 16, 0x21), sizes({c: 0x31}))
    assert (why.from_, why.text) == ("top", "in place, grown into the next chunk 0x5555555592b0 (top): 0x20 -> 0x30")
    shrunk = explain(L, s, s, Call("realloc", [c + 16, 24], c + 16, c + 16, 0x41), sizes({c: 0x21}))
    assert shrunk.text == "in place (0x40 -> 0x20); the rest 0x5555555592b0 freed"
    same = explain(L, s, s, Call("realloc", [c + 16, 20], c + 16, c + 16, 0x21), sizes({c: 0x21}))
    assert same.text == "in place (0x20 -> 0x20)"


def test_realloc_of_an_mmapped_chunk_in_place():
    big = 0x7ffff7da1000
    s = state(arena(HEAP), n_mmaps=1, mmapped=0x31000)
    why = explain(L, s, state(arena(HEAP), n_mmaps=1, mmapped=0x41000),
                  Call("realloc", [big + 16, 260000], big + 16, big + 16, 0x31002), sizes({big: 0x41002}))
    assert (why.from_, why.text) == ("mmap", "in place (its mapping resized: 0x31000 -> 0x41000)")


def test_realloc_moved_and_the_null_and_zero_cases():
    old, new, top = HEAP + 0x290, HEAP + 0x2b0, HEAP + 0x2b0
    before = state(arena(top))
    after = state(arena(top + 0x40), 1, old)
    why = explain(L, before, after, Call("realloc", [old + 16, 48], new + 16, new + 16, 0x21),
                  sizes({new: 0x41, old: 0x21}))
    assert (why.chunk, why.from_, why.to, why.bin_index) == (new, "top", "tcache", None)
    assert why.text.startswith(f"moved from {old:#x}: new chunk cut from top; the old one to ")
    assert explain(L, before, before, Call("realloc", [0, 24], 0, None), sizes({})).text == "failed"
    freed = explain(L, state(arena(top)), state(arena(top), 1, old), Call("realloc", [old + 16, 0], 0, None, 0x21),
                    sizes({}))
    assert (freed.to, freed.bin_index) == ("tcache", 0)
    assert explain(L, before, before, Call("free", [0], None, None), sizes({})).text == \
        "nothing to free (a null pointer)"
    assert explain(L, before, before, Call("malloc", [1 << 40], 0, None), sizes({})).text == \
        "failed: no memory returned"
    unread = explain(L, before, before, Call("malloc", [24], old + 16, old + 16), sizes({}))
    assert (unread.chunk, unread.text) == (old, "the chunk's header is not readable")
    assert explain(L, before, before, Call("free", [old + 16], None, None), sizes({})).text == \
        "the chunk's header was not readable"


# -- where a chunk came from, every source ---------------------------------------------------------

def arena_with(top: int, last_remainder: int = 0, heads: Optional[Dict[int, int]] = None, fast: int = 0,
               fast_index: int = 0) -> MallocState:
    """An arena whose regular bin i (from `heads`) holds one chunk, its fd and bk both."""
    a = arena(top)
    bins = list(a.bins)
    for i, chunk in (heads or {}).items():
        bins[2 * (i - 1)] = bins[2 * (i - 1) + 1] = chunk
    fastbins = [0] * 10
    fastbins[fast_index] = fast
    return MallocState(ARENA, 0, 0, tuple(fastbins), top, last_remainder, tuple(bins), (0,) * 4, ARENA, 0, 1,
                       0x21000, 0x21000)


def malloc(before: State, after: State, chunk: int, table: Dict[int, int], syscalls=()) -> "Why":
    return explain(L, before, after, Call("malloc", [24], chunk + 16, chunk + 16, None, list(syscalls)),
                   sizes(table))


def test_came_from_each_source():
    c, top = HEAP + 0x400, HEAP + 0x2000
    why = malloc(state(arena(top)), state(arena(top)), 0x7ffff7da1000, {0x7ffff7da1000: 0x31002})
    assert (why.from_, why.text) == ("mmap", "a mapping of its own (mmap: the request is at or above the mmap "
                                             "threshold)")
    why = malloc(state(arena(top), 2, c), state(arena(top)), c, {c: 0x21})
    assert (why.from_, why.bin_index, why.text) == (
        "tcache", 0, "taken from the head of tcache[0] (the thread's cache of 0x20-byte chunks)")
    fast = arena_with(top, fast=c, fast_index=1)  # fastbin_index(0x30) = (0x30 >> 4) - 2 = 1
    why = malloc(state(fast), state(arena(top)), c, {c: 0x31})
    assert (why.from_, why.bin_index, why.text) == ("fast", 1, "taken from the head of fast[1]")
    # the last remainder, split again: its rest is the new last_remainder
    rest = c + 0x20
    why = malloc(state(arena_with(top, last_remainder=c)), state(arena_with(top, last_remainder=rest)), c,
                 {c: 0x21, rest: 0x101})
    assert (why.from_, why.text) == ("last_remainder", "cut from the last remainder (the rest of the last split "
                                     f"chunk); the remainder {rest:#x} (0x100 bytes) left in the unsorted bin as "
                                     "last_remainder")
    why = malloc(state(arena(top, unsorted=c), unsorted=[c]), state(arena(top)), c, {c: 0x21})
    assert (why.from_, why.bin_index, why.text) == ("unsorted", 1, "taken from the unsorted bin (an exact fit)")
    why = malloc(state(arena(top, unsorted=c), unsorted=[c]), state(arena(top, unsorted=rest), unsorted=[rest]), c,
                 {c: 0x21, rest: 0x4e1})
    assert why.text == (f"taken from the unsorted bin, split; the remainder {rest:#x} (0x4e0 bytes) left in the "
                        "unsorted bin")
    small = arena_with(top, heads={2: c})  # bin 2: 0x20-byte chunks
    why = malloc(state(small), state(arena(top)), c, {c: 0x21})
    assert (why.from_, why.bin_index, why.text) == ("small", 2, "taken from small[2]")
    large = arena_with(top, heads={64: c})
    why = malloc(state(large), state(arena(top)), c, {c: 0x401})
    assert (why.from_, why.bin_index, why.text) == ("large", 64, "taken from large[64]")


def test_came_from_top_and_new_arenas():
    top = HEAP + 0x2000
    why = malloc(state(arena(top)), state(arena(top + 0x20)), top, {top: 0x21})
    assert (why.from_, why.text) == ("top", "cut from top")
    unmade = state(arena(0))  # no heap yet: top is still the unsorted bin's header
    why = malloc(unmade, state(arena(top + 0x20)), top, {top: 0x21})
    assert why.text == "cut from top after making the heap"
    other = 0x7ffff0000020
    after = State({ARENA: arena(top), other: replace(arena(top), address=other)}, 0, 0, None, {})
    why = malloc(state(arena(top)), after, 0x7ffff00008d0, {0x7ffff00008d0: 0x25})
    assert (why.from_, why.text) == ("top", "cut from the top of a new arena (a heap mmapped for this thread)")
    # fast bins consolidated into top, then cut from it: the chunk is not the old top
    c, d = top - 0x40, top - 0x20  # d, in fast[0], merged into top; c cut from the merged top
    why = malloc(state(arena_with(top, fast=d)), state(arena(c + 0x20)), c, {c: 0x21})
    assert why.text == "cut from top (fast bins consolidated first: the chunks next to top merged into it)"


def test_came_from_inside_a_chain():
    """Neither a head nor top: the bin of its size (0x20: small[2]; 0x500: largebin_index_64 is
    48 + (0x500 >> 6) = 68)."""
    top, c = HEAP + 0x2000, HEAP + 0x400
    why = malloc(state(arena(top)), state(arena(top)), c, {c: 0x21})
    assert (why.from_, why.bin_index, why.text) == ("small", 2, "taken from small[2] (a 0x20-byte chunk inside its "
                                                                "chain)")
    why = malloc(state(arena(top)), state(arena(top)), c, {c: 0x501})
    assert (why.from_, why.bin_index) == ("large", 68)


def links(fds: Dict[int, int]):
    """fd words by address (a chunk's fd is at chunk + 16), and the addresses read."""
    read = []

    def fd(address: int) -> Optional[int]:
        read.append(address)
        return fds.get(address)
    return fd, read


def test_chain_reads_only_as_far_as_asked():
    header = bin_at(L, ARENA, 1)
    fd, read = links({HEAP + 0x10: HEAP + 0x100, HEAP + 0x110: HEAP + 0x200, HEAP + 0x210: header})
    chain = Chain(HEAP, header, fd, 8)
    assert chain[:1] == (HEAP,) and read == [HEAP + 0x10]  # the head: its fd read, nothing further
    assert HEAP + 0x100 in chain and read == [HEAP + 0x10, HEAP + 0x110]
    assert tuple(chain) == (HEAP, HEAP + 0x100, HEAP + 0x200)  # ends at the bin's header
    assert 0x1234 not in chain
    assert len(read) == 3  # each link read once


def test_chain_ends_at_a_cycle_an_unreadable_link_and_its_bound():
    header = bin_at(L, ARENA, 1)
    fd, _ = links({HEAP + 0x10: HEAP + 0x100, HEAP + 0x110: HEAP})  # back to the first: a cycle
    assert tuple(Chain(HEAP, header, fd, 8)) == (HEAP, HEAP + 0x100)
    fd, _ = links({HEAP + 0x10: HEAP + 0x100})  # the second one's fd is unreadable: kept, and the end
    assert tuple(Chain(HEAP, header, fd, 8)) == (HEAP, HEAP + 0x100)
    fd, _ = links({HEAP + 0x20 * i + 0x10: HEAP + 0x20 * (i + 1) for i in range(200)})
    assert len(tuple(Chain(HEAP, header, fd, 8))) == UNSORTED_READ
    assert tuple(Chain(0, header, fd, 8)) == () and tuple(Chain(header, header, fd, 8)) == ()
