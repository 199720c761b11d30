"""The calls settled at their entry (settled.py): a malloc the tcache serves and a free into a
tcache bin with room give the call's result and the tcache after it; every other call is left
to its return (None).  Synthetic heaps (tests/synthetic.py); the tcache after the call is read
by this test's own parser of tcache_perthread_struct (2.36 x86_64: uint16_t counts[64] at 0,
entries[64] at 0x80; 2.42: num_slots[76] at 0, entries[76] at 0x98) and written by hand."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Callable, Optional, Tuple

from gdb_heap import paths, settled
from gdb_heap.explain import State, TcacheState
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic


def parser(address: int, bins: int, entries_at: int) -> Callable[[bytes], TcacheState]:
    def parse(raw: bytes) -> TcacheState:
        counts = struct.unpack_from(f"<{bins}H", raw, 0)
        entries = struct.unpack_from(f"<{bins}Q", raw, entries_at)
        return TcacheState(address, counts, tuple(e - 0x10 if e else 0 for e in entries))
    return parse


PARSE_236 = (64, 0x80)


def entry_state(s: Synthetic, bins: int = 64, entries_at: int = 0x80):
    """(context, reader, the state at the call's entry, the tcache's bytes, the parser)."""
    heap = s.heap()
    assert s.tcache is not None
    raw = bytes(s.memory.read(s.tcache, entries_at + 8 * bins))
    parse = parser(s.tcache, bins, entries_at)
    before = State({s.arena: None}, 3, 0x5000, parse(raw), {s.arena: None})  # type: ignore[dict-item]
    return paths.context_for(heap), heap.reader, before, raw, parse


def settles(*args: object) -> Tuple[Optional[int], State]:
    done = settled.settle(*args)  # type: ignore[arg-type]
    assert done is not None
    return done


def test_free_into_a_tcache_bin_with_room():
    b = HeapBuilder((2, 36), 8)
    a = b.chunk(0x30)
    b.chunk(0x20)
    ctx, reader, before, raw, parse = entry_state(b.build())
    assert before.tcache is not None and before.tcache.counts[1] == 0
    result, after = settles(reader, ctx, "free", [a + 0x10], before, raw, parse)
    assert result is None
    assert after.tcache is not None
    assert (after.tcache.counts[1], after.tcache.heads[1]) == (1, a)  # (0x30 - 0x20) / 0x10 = 1
    assert after.tcache.counts[:1] + after.tcache.counts[2:] == (0,) * 63
    # what a tcache free cannot change is the entry's, object for object
    assert (after.arenas, after.n_mmaps, after.mmapped_mem, after.unsorted) == \
        (before.arenas, 3, 0x5000, before.unsorted)
    assert after.arenas is before.arenas and after.unsorted is before.unsorted


def test_malloc_served_by_the_tcache():
    b = HeapBuilder((2, 36), 8)
    t1 = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    t2 = b.chunk(0x30, "tcache")  # freed last: the bin's head
    b.chunk(0x20)
    ctx, reader, before, raw, parse = entry_state(b.build())
    assert before.tcache is not None and before.tcache.counts[1] == 2
    result, after = settles(reader, ctx, "malloc", [0x28], before, raw, parse)
    assert result == t2 + 0x10
    assert after.tcache is not None and (after.tcache.counts[1], after.tcache.heads[1]) == (1, t1)


def test_free_of_null_changes_nothing():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x30)
    ctx, reader, before, raw, parse = entry_state(b.build())
    result, after = settles(reader, ctx, "free", [0], before, raw, parse)
    assert result is None and after is before


def test_calls_left_to_their_return():
    b = HeapBuilder((2, 36), 8)
    for _ in range(7):  # tcache[0] full
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    a = b.chunk(0x20)
    t = b.chunk(0x40, "tcache")
    b.chunk(0x30)
    c = b.chunk(0x50)  # in use; tcache[3] empty
    b.chunk(0x30)
    f = b.chunk(0x60, "fast")  # tcache[4] empty: a malloc of 0x58 takes it from fast[4]
    b.chunk(0x30)
    s = b.build(top_size_min=0x1000)
    ctx, reader, before, raw, parse = entry_state(s)
    assert settled.settle(reader, ctx, "free", [a + 0x10], before, raw, parse) is None  # to fast[0]
    assert settled.settle(reader, ctx, "malloc", [0x100], before, raw, parse) is None  # from top
    assert settled.settle(reader, ctx, "free", [t + 0x10], before, raw, parse) is None  # double free: aborts
    assert settled.settle(reader, ctx, "calloc", [1, 0x38], before, raw, parse) is None  # not one of CALLS
    assert settled.settle(reader, ctx, "realloc", [t + 0x10, 0x38], before, raw, parse) is None
    assert settled.settle(reader, ctx, "realloc", [c + 0x10, 0x38], before, raw, parse) is None  # not a free
    assert paths.try_malloc(reader, ctx, 0x58).source == "fast"
    assert settled.settle(reader, ctx, "malloc", [0x58], before, raw, parse) is None  # from fast[4]: not settled
    assert f
    assert settled.settle(reader, replace(ctx, tcache=None), "malloc", [0x38], before, raw, parse) is None
    assert settled.settle(reader, ctx, "malloc", [0x38], replace(before, tcache=None), raw, parse) is None
    # the same malloc with both tcaches known is settled: the tcache[2] chunk t
    done = settled.settle(reader, ctx, "malloc", [0x38], before, raw, parse)
    assert done is not None and done[0] == t + 0x10


def test_a_crash_or_a_give_up_is_left_to_the_return(monkeypatch):
    b = HeapBuilder((2, 36), 8)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    ctx, reader, before, raw, parse = entry_state(s)
    # free of a pointer whose header is unreadable: a crash
    assert settled.settle(reader, ctx, "free", [0x10], before, raw, parse) is None
    # a budget of one word: the path gives up at once
    with monkeypatch.context() as m:
        m.setattr(paths, "BUDGET", 1)
        assert settled.settle(reader, ctx, "malloc", [0x28], before, raw, parse) is None
    assert settled.settle(reader, ctx, "malloc", [0x28], before, raw, parse)[0] == t + 0x10  # type: ignore[index]


def test_a_large_tcache_bin_is_left_to_the_return():
    """2.42+: a chunk past the small tcache bins goes to a large tcache bin (sorted lists
    paths.py does not rewrite): left to the return.  mp_.tcache_max_bytes raised so 0x500 goes
    to the tcache at all (tcache_index: bin 64, the first large one)."""
    b = HeapBuilder((2, 42), 8)
    a = b.chunk(0x500)
    c = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    L = s.layout
    s.poke(s.mp + L.malloc_par.offset("tcache_max_bytes"), 0x10000)
    ctx, reader, before, raw, parse = entry_state(s, 76, 0x98)
    assert paths.try_free(reader, ctx, a + 0x10).to == "tcache[64]"
    assert settled.settle(reader, ctx, "free", [a + 0x10], before, raw, parse) is None
    done = settled.settle(reader, ctx, "free", [c + 0x10], before, raw, parse)  # a small bin: settled
    assert done is not None and done[1].tcache is not None and done[1].tcache.heads[1] == c
    assert done[1].tcache.counts[1] == before.tcache.counts[1] - 1  # num_slots: one fewer free


def test_overlay_lays_whole_words_inside_the_bytes():
    reader = Reader(ImageMemory({}), 8)
    raw = bytes(range(32))
    written = {0x1000: 0x1111, 0x1018: 0x2222,  # the first and the last whole word
               0x1019: 0x3333, 0xFF8: 0x4444, 0x1020: 0x5555}  # past the end, before, after
    out = settled._overlay(raw, 0x1000, written, reader)
    assert out == (0x1111).to_bytes(8, "little") + raw[8:24] + (0x2222).to_bytes(8, "little")
    big = Reader(ImageMemory({}), 4, little_endian=False)
    assert settled._overlay(bytes(8), 0x2000, {0x2004: 0x01020304}, big) == bytes(4) + b"\x01\x02\x03\x04"
