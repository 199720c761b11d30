"""pointers.Namer at its edges, exact, glibc 2.36 x86-64 (CHUNK_HDR_SZ H = 0x10): a heap span's
first byte, last byte and one past (a span ends H past its heap's end: the header there), a
chunk's first and last byte, the value 0x1000 (below it nothing is named), short()'s fast path
(the span of the last free chunk named) against chunk_of's answers, a thread arena's names,
stacks, symbols and mappings.

malloc_state (2.36): fastbinsY at 16, top 96, last_remainder 104, bins at 112 (bins[254], to
2144), so bin_at(i) = 112 + 16 (i - 1) - 16; mp_ starts with trim_threshold; heap_info is
ar_ptr, prev, size, mprotect_size.  The thread arena is tests/test_thread_arena.py's."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from gdb_heap.heap import ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.model import Arena, BinChain
from gdb_heap.pointers import Namer
from gdb_heap.symbols import Symbol
from tests.synthetic import HeapBuilder, Synthetic, noncontiguous, uninitialised_image
from tests.test_thread_arena import ARENA_T, SIZE, H as T, with_thread_arena
from tests.test_views import one_of_each

H = 0x10


def words(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def spy(namer: Namer) -> List[int]:
    """The values chunk_of is asked about from now on (the fast path answers without it)."""
    calls: List[int] = []
    real = namer.chunk_of

    def chunk_of(value: int) -> Optional[Tuple[Arena, int]]:
        calls.append(value)
        return real(value)

    namer.chunk_of = chunk_of  # type: ignore[method-assign]
    return calls


def low_heap() -> Synthetic:
    """No tcache, the heap at 0x1000: 0x1000 fast 0x20 | 0x1020 in use 0x30 | 0x1050 fast 0x20 |
    0x1070 in use 0x30 | top 0x10a0 to 0x2000 (MINSIZE rounded up to the page): the span
    0x1000..0x2010."""
    b = HeapBuilder((2, 36), 8, tcache=False, sbrk_base=0x1000)
    assert [b.chunk(0x20, "fast"), b.chunk(0x30), b.chunk(0x20, "fast"), b.chunk(0x30)] == [
        0x1000, 0x1020, 0x1050, 0x1070]
    s = b.build()
    assert (s.top, s.heap_end) == (0x10A0, 0x2000)
    return s


LOW: Dict[int, str] = {
    0: "NULL",
    0xFFF: "0xfff",  # below a page: never a chunk
    0x1000: "chunk 0x1000",  # the span's first byte, a free chunk (fast[0])
    0x1008: "chunk 0x1000+0x8",
    0x1010: "chunk 0x1000+0x10",  # its user pointer
    0x101F: "chunk 0x1000+0x1f",  # its last byte
    0x1020: "chunk 0x1020",  # in use
    0x1030: "chunk 0x1020+0x10",
    0x1040: "chunk 0x1020+0x20",  # 0x1040 + H is the next (free) chunk
    0x104F: "chunk 0x1020+0x2f",
    0x1050: "chunk 0x1050",
    0x1060: "chunk 0x1050+0x10",
    0x1070: "chunk 0x1070",
    0x1090: "chunk 0x1070+0x20",  # 0x1090 + H is top
    0x109F: "chunk 0x1070+0x2f",
    0x10A0: "chunk 0x10a0",  # top
    0x10B0: "chunk 0x10a0+0x10",
    0x2000: "chunk 0x10a0+0xf60",  # the heap's end: the header there is the span's
    0x200F: "chunk 0x10a0+0xf6f",  # the span's last byte
    0x2010: "0x2010",  # one past
}


def test_short_at_every_edge_of_a_heap_at_0x1000():
    s = low_heap()
    heap = s.heap()
    for value, text in LOW.items():
        assert Namer(heap).short(value) == text, hex(value)


def test_the_fast_path_gives_chunk_ofs_answers_in_and_around_its_span():
    s = low_heap()
    n = Namer(s.heap())
    assert n.short(0x1050) == "chunk 0x1050"  # a free chunk named: its span remembered
    calls = spy(n)
    fast = [0x1000, 0x1010, 0x1050, 0x1060, 0x10A0, 0x10B0]  # free chunks, top, their user pointers
    assert [n.short(v) for v in fast] == [LOW[v] for v in fast]
    assert calls == []  # no search: the fast path answered
    for value, text in LOW.items():
        assert n.short(value) == text, hex(value)
    # every word of the span and past it, as a Namer that remembers nothing names it
    fresh = [Namer(s.heap()).short(v) for v in range(0xFF8, 0x2020, 8)]
    n.short(0x1000)
    assert [n.short(v) for v in range(0xFF8, 0x2020, 8)] == fresh


def test_the_span_is_remembered_from_a_free_chunk_at_its_first_byte():
    s = low_heap()
    n = Namer(s.heap())
    assert n.short(0x1000) == "chunk 0x1000"
    calls = spy(n)
    assert (n.short(0x1060), n.short(0x10A0)) == ("chunk 0x1050+0x10", "chunk 0x10a0")
    assert calls == []


def test_a_value_at_0x1000_is_named_and_one_below_is_not():
    s = low_heap()
    n = Namer(s.heap())
    assert n.name(0x1000) == "chunk 0x1000 (free fast[0])"
    assert n.meaning(0xFFF) is None and n.name(0xFFF) == ""


def test_a_chunk_a_bin_lists_past_the_heaps_end_is_named_only_inside_the_span():
    """fastbinsY[1] forged to list 0x2000, the heap's end, where readable memory holds a 0x30
    size: 0x2000 is in the span (the header at the heap's end), 0x2010 one past it."""
    s = low_heap()
    s.poke(s.arena + 16 + 8, 0x2000)
    beyond = bytearray(0x1000)
    beyond[8:16] = (0x31).to_bytes(8, "little")
    s.memory.add(0x2000, beyond)
    n = Namer(s.heap())
    assert n.short(0x1050) == "chunk 0x1050"
    assert (n.short(0x2000), n.short(0x2010)) == ("chunk 0x2000", "0x2010")


def test_free_chunks_and_top_are_named_without_walking_the_heap():
    s, c = one_of_each()
    heap = s.heap()
    n = Namer(heap)
    assert [n.short(c["tcache"]), n.short(c["fast"] + H), n.name(c["small"] + H), n.short(s.top),
            n.short(s.top + H)] == [
        f"chunk {c['tcache']:#x}", f"chunk {c['fast']:#x}+0x10", f"chunk {c['small']:#x}+0x10 (free small[16])",
        f"chunk {s.top:#x}", f"chunk {s.top:#x}+0x10"]
    assert not heap.main_arena.loaded


def test_each_arena_is_walked_once():
    s, c = one_of_each()
    heap = s.heap()
    walks: List[int] = []
    real = heap.chunk_batches

    def chunk_batches(arena, problems):
        walks.append(arena.address)
        return real(arena, problems)

    heap.chunk_batches = chunk_batches
    n = Namer(heap)
    assert [n.short(c["used"] + 8), n.short(c["guard1"] + 0x18), n.name(c["guard4"] + 1)] == [
        f"chunk {c['used']:#x}+0x8", f"chunk {c['guard1']:#x}+0x18", f"chunk {c['guard4']:#x}+0x1 (in use)"]
    assert walks == [s.arena]


def test_a_damaged_heap_is_named_up_to_the_damage():
    s, c = one_of_each()
    s.poke(c["guard2"] + 8, 0)  # a size of 0: the walk stops there
    n = Namer(s.heap())
    assert n.short(c["guard1"] + 8) == f"chunk {c['guard1']:#x}+0x8"
    assert n.short(c["used"]) == f"chunk {c['used']:#x}"


def test_the_fast_path_after_a_walk_found_the_regions():
    s, c = one_of_each()
    n = Namer(s.heap())
    assert n.short(c["used"] + 8) == f"chunk {c['used']:#x}+0x8"  # a walk: the regions are known
    assert n.short(c["tcache"]) == f"chunk {c['tcache']:#x}"
    calls = spy(n)
    assert n.short(c["fast"] + H) == f"chunk {c['fast']:#x}+0x10"
    assert n.short(c["used"] + 8) == f"chunk {c['used']:#x}+0x8"
    assert n.short(c["small"]) == f"chunk {c['small']:#x}"
    assert calls == [c["used"] + 8]


def test_a_gap_between_a_main_heaps_regions_is_no_chunk():
    """noncontiguous()'s second region 64 KiB past the heap's end, NONCONTIGUOUS_BIT cleared
    again (a foreign sbrk leaves a gap in a contiguous heap): one span covers the gap until the
    walk finds the two regions; the gap is then nobody's."""
    s, _ = one_of_each()
    mapped = s.heap_end + 0x10000
    s = noncontiguous(s, mapped)
    flags = s.arena + s.layout.malloc_state.offset("flags")
    s.poke(flags, s.peek(flags, 4) & ~2, 4)
    n = Namer(s.heap())
    assert n.short(s.heap_end + 0x100) == f"{s.heap_end + 0x100:#x}"
    assert n.short(mapped + 0x18) == f"chunk {mapped:#x}+0x18"  # the second region's first chunk
    assert n.short(s.heap_end + 0x100) == f"{s.heap_end + 0x100:#x}"


def test_nothing_is_a_chunk_before_the_first_malloc():
    u = uninitialised_image()
    n = Namer(u.heap())
    assert n.short(u.arena + 96) == f"{u.arena + 96:#x}"
    assert n.short(0x555555560010) == "0x555555560010"


# -- a thread arena ------------------------------------------------------------------------------

def test_a_thread_arenas_fields_and_bin_headers():
    _, heap = with_thread_arena()
    n = Namer(heap)
    assert n.name(ARENA_T + 96) == "<arena 0x7ffff0000030+96> unsorted (bin_at(1))"
    assert n.short(ARENA_T + 96) == "<arena 0x7ffff0000030+96>"
    assert n.name(ARENA_T + 24) == "<arena 0x7ffff0000030+24> fastbinsY[1]"
    assert n.name(T + 16) == "<heap_info 0x7ffff0000000+16> size"
    assert n.short(T + 16) == "<heap_info 0x7ffff0000000+16>"
    assert n.name(T) == "<heap_info 0x7ffff0000000+0> ar_ptr"
    # a free chunk's links to its bin's header, as heap chunks shows them
    assert n.free_links(T + 0x900, "small", words(ARENA_T + 96, ARENA_T + 96)) == (
        "fd <arena 0x7ffff0000030+96> bk <arena 0x7ffff0000030+96>")


def test_bin_heads_of_fast_bins_and_of_a_tcache_not_found():
    _, heap = with_thread_arena(fast_free=True)
    n = Namer(heap)
    main, thread = heap.arenas
    fast1 = BinChain("fast", 1, 0x30, 1, [T + 0x900])
    assert n.bin_head(main, fast1) == "<main_arena+24>"
    assert n.bin_head(thread, fast1) == "<arena 0x7ffff0000030+24>"
    assert n.bin_head(thread, BinChain("small", 16, 0x100, 0, [])) == "<arena 0x7ffff0000030+336>"
    assert n.bin_head(main, BinChain("tcache", 1, 0x30, 1, [T + 0x900]), None) == ""


def test_short_across_two_arenas_gives_chunk_ofs_answers():
    s, heap = with_thread_arena(fast_free=True)
    n = Namer(heap)
    main_free = s.free_chunks("tcache")[0].address
    assert n.short(T + 0x900) == "chunk 0x7ffff0000900"  # the thread heap's span remembered
    calls = spy(n)
    assert [n.short(T + 0x910), n.short(T + 0x930), n.short(T + 0x940)] == [
        "chunk 0x7ffff0000900+0x10", "chunk 0x7ffff0000930", "chunk 0x7ffff0000930+0x10"]
    assert calls == []
    # the main arena not walked yet: an in-use chunk of the thread heap
    assert n.short(T + 0x8D0 + 0x18) == "chunk 0x7ffff00008d0+0x18"
    assert n.short(T + 0x8CF) == "0x7ffff00008cf"  # past the malloc_state, before the first chunk
    # the thread heap's span: its last byte (the header past its end) and one past
    assert n.short(T + SIZE + 0xF) == "chunk 0x7ffff0000930+0x206df"
    assert n.short(T + SIZE + 0x10) == "0x7ffff0021010"
    # the other arena's chunks while the thread heap is remembered
    assert n.short(s.top) == f"chunk {s.top:#x}"
    assert n.short(main_free + H) == f"chunk {main_free:#x}+0x10"
    assert n.short(main_free) == f"chunk {main_free:#x}"  # the main heap's span remembered
    del calls[:]
    assert n.short(s.top + H) == f"chunk {s.top:#x}+0x10"
    assert calls == []
    assert n.short(T + 0x910) == "chunk 0x7ffff0000900+0x10"
    assert calls == [T + 0x910]


# -- meanings other than chunks ------------------------------------------------------------------

def test_kinds_of_meaning_and_the_mappings_names():
    s, c = one_of_each()
    s.anchors.threads = lambda: [ThreadInfo(3, 103, False, None, None, 0x7FFFF73FEE00, 0x7FFFF73FF6C0)]
    symbols = {0x7FFFF7F00010: Symbol("__free_hook", 0, "__free_hook in section .bss")}
    maps = [Mapping(0x7FFFF7E00000, 0x7FFFF7F80000, "/usr/lib/libc.so.6"),
            Mapping(0x610000000000, 0x610000002000, "[anon:pool/1]"),  # a name prctl gave: kept whole
            Mapping(0x7FFFF6400000, 0x7FFFF7C00000, ""),  # the thread's stack
            Mapping(0x600000000000, 0x600000001000, "")]  # given out of order
    n = Namer(s.heap(), symbols.get, maps)

    def kind_text(value: int) -> Tuple[str, str]:
        m = n.meaning(value)
        assert m is not None, hex(value)
        return m.kind, m.text

    m = n.meaning(c["small"] + 0x35)
    assert m is not None and (m.kind, m.chunk, m.offset, m.state) == ("chunk", c["small"], 0x35, "free small[16]")
    assert kind_text(0x7FFFF73FEE00) == ("stack", "thread 3's stack ($sp+0x0)")  # at $sp
    assert kind_text(0x7FFFF73FEDF8) == ("stack", "thread 3's stack ($sp-0x8)")
    assert kind_text(0x7FFFF7F00010) == ("symbol", "<__free_hook>")
    assert kind_text(0x7FFFF7E00000) == ("mapping", "in libc.so.6")
    assert kind_text(0x7FFFF7F7FFFF) == ("mapping", "in libc.so.6")
    assert n.name(0x7FFFF7F80000) == ""  # one past the mapping
    assert kind_text(0x600000000000) == ("mapping", "in an anonymous mapping")
    assert kind_text(0x600000000FFF) == ("mapping", "in an anonymous mapping")
    assert n.name(0x600000001000) == ""
    assert n.short(0x600000000008) == "in an anonymous mapping"
    assert kind_text(0x610000001000) == ("mapping", "in [anon:pool/1]")


def test_fields_of_an_arena_and_mp_at_their_edges():
    s, c = one_of_each()
    n = Namer(s.heap())
    assert n.name(s.arena + 104) == "<main_arena+104> last_remainder"  # bin_at(1) + 8: no bin header
    assert n.name(s.arena + 2112) == "<main_arena+2112> large[127] (bin_at(127))"  # the last bin
    assert n.name(s.arena + 2128) == "<main_arena+2128> bins[252]"  # where bin_at(128) would be
    assert n.name(s.mp) == "<mp_+0> trim_threshold"


def test_free_links_read_two_words_and_reveal_from_the_user_pointers_page():
    s, c = one_of_each()
    n = Namer(s.heap())
    assert n.free_links(c["small"], "small", words(s.arena + 336, c["large"], 0x1234)) == (
        f"fd <main_arena+336> bk chunk {c['large']:#x}")
    # a tcache chunk 0x10 below a page: PROTECT_PTR's position is its user pointer, on the next page
    b = HeapBuilder((2, 36), 8)
    used = b.chunk(0xD60)
    t = b.chunk(0x30, "tcache")
    g = b.chunk(0x20)
    assert (used, t, g) == (0x555555560290, 0x555555560FF0, 0x555555561020)
    n = Namer(b.build().heap())
    assert n.free_links(t, "tcache", words((0x555555561000 >> 12) ^ (g + H))) == f"next chunk {g:#x}+0x10"
