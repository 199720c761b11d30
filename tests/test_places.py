"""places.py: `heap where` and `heap layout` on hand-built synthetic heaps.

Offsets are hand arithmetic from glibc 2.36's struct declarations on x86-64 (malloc_state:
mutex 0, flags 4, have_fastchunks 8, fastbinsY 0x10 (10 words), top 0x60, last_remainder 0x68,
bins 0x70; tcache_perthread_struct: counts 0 (64 uint16), entries 0x80) and from how
tests/synthetic.py lays chunks out; never computed by gdb_heap.
"""

from __future__ import annotations

from gdb_heap import places, render
from gdb_heap.heap import ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.style import Style
from gdb_heap.symbols import Symbol
from tests.synthetic import HeapBuilder

H = 0x10


def no_symbol(_: int):
    return None


def built():
    b = HeapBuilder((2, 36), 8)
    c = {"used": b.chunk(0x40), "tcache": b.chunk(0x30, "tcache"), "guard": b.chunk(0x20)}
    s = b.build()
    return s, c


def fits(lines):
    lines = list(lines)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    return lines


def test_a_bin_header_word_names_its_bin():
    s, _ = built()
    heap = s.heap()
    # bins[4]: bin_at(m, 3) = &bins[(3 - 1) * 2] - offsetof(fd): bin 3's fd, small bin 3
    p = places.describe(heap, s.arena + 0x70 + 4 * 8, no_symbol)
    assert (p.kind, p.arena, p.field, p.offset, p.chunk) == ("arena", s.arena, "bins[4]", 0x90, None)
    assert p.meaning == "small[3]'s header: its fd (first chunk)"
    assert places.describe(heap, s.arena + 0x70 + 8, no_symbol).meaning == "unsorted's header: its bk (last chunk)"
    # bins[2 * (64 - 1)]: bin 64, the first large bin
    assert places.describe(heap, s.arena + 0x70 + 126 * 8, no_symbol).meaning.startswith("large[64]'s header")
    top = places.describe(heap, s.arena + 0x60 + 3, no_symbol)  # inside the top word
    assert (top.field, top.offset, top.expression) == ("top", 0x63, "main_arena.top")
    fast = places.describe(heap, s.arena + 0x10 + 2 * 8, no_symbol)
    assert (fast.field, fast.meaning) == ("fastbinsY[2]", "the head of fast[2]")


def test_tcache_fields_name_the_thread():
    s, _ = built()
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100),
                                 ThreadInfo(2, 102, False, None, None)]
    heap = s.heap()
    p = places.describe(heap, s.tcache + 0x80 + 3 * 8, no_symbol)
    assert (p.kind, p.thread, p.field, p.chunk, p.offset) == ("tcache", 1, "entries[3]", s.tcache - H, 0x98)
    assert p.meaning == "the head of tcache[3]"
    q = places.describe(heap, s.tcache + 3 * 2, no_symbol)
    assert (q.field, q.meaning) == ("counts[3]", "the count of tcache[3]")


def test_an_address_inside_a_chunk():
    s, c = built()
    p = places.describe(s.heap(), c["used"] + 0x18, no_symbol)
    assert (p.kind, p.chunk, p.offset, p.arena) == ("chunk", c["used"], 0x18, s.arena)
    assert p.where is not None and p.where.user_offset == 0x8
    lines = fits(render.where_lines(p, Style(False)))
    assert lines[0] == f"{c['used'] + 0x18:#x} is inside chunk {c['used']:#x} (in use)"
    assert lines[1] == f"  offset    +0x18 from the chunk, +0x8 from the user pointer {c['used'] + H:#x}"
    free = places.describe(s.heap(), c["tcache"] + H, no_symbol)
    assert fits(render.where_lines(free, Style(False)))[0] == (
        f"{c['tcache'] + H:#x} is the user pointer of chunk {c['tcache']:#x} (free tcache[1])")


def test_stacks_symbols_mappings_and_nothing():
    s, _ = built()
    stack = Mapping(0x7FFFF6400000, 0x7FFFF7C00000, "")  # three threads' stacks, merged by the kernel
    libc = Mapping(0x7FFFF7A00000, 0x7FFFF7A10000, "/usr/lib/libc.so.6")
    s.anchors.mappings = lambda: ([stack], "test")
    s.anchors.threads = lambda: [
        ThreadInfo(2, 102, False, None, None, 0x7FFFF7BFEE00, 0x7FFFF7BFF6C0),
        ThreadInfo(3, 103, False, None, None, 0x7FFFF73FEE00, 0x7FFFF73FF6C0),
        ThreadInfo(4, 104, False, None, None, 0x7FFFF6BFEE00, 0x7FFFF6BFF6C0)]
    heap = s.heap()
    # thread 3's allocation: above thread 4's (ends 0x7ffff6c00000), up to the page after its TCB
    for address, thread in ((0x7FFFF73FEE10, 3), (0x7FFFF6C00000, 3), (0x7FFFF73FFFFF, 3), (0x7FFFF7400000, 2),
                            (0x7FFFF6500000, 4)):
        p = places.describe(heap, address, no_symbol)
        assert (p.kind, p.thread, p.mapping) == ("stack", thread, ""), hex(address)
    assert places.describe(heap, 0x7FFFF73FEE10, no_symbol).offset == 0x10
    s.anchors.mappings = lambda: ([libc], "test")
    heap = s.heap()
    g = places.describe(heap, 0x7FFFF7A00123, lambda a: Symbol("some_global", 3, "some_global + 3 in section .data"))
    assert (g.kind, g.symbol, g.offset, g.mapping) == ("symbol", "some_global+3", 3, "/usr/lib/libc.so.6")
    m = places.describe(heap, 0x7FFFF7A00123, no_symbol)
    assert (m.kind, m.offset, m.mapping) == ("mapping", 0x123, "/usr/lib/libc.so.6")
    n = places.describe(heap, 0x10, no_symbol)
    assert n.doc() == {"address": 0x10, "kind": "nothing", "chunk": None, "offset": None, "arena": None,
                       "thread": None, "field": None, "symbol": None, "mapping": None}


def test_layout_puts_each_thing_in_its_mapping():
    s, _ = built()
    heap_map = Mapping(s.sbrk_base, s.heap_end, "[heap]", perms="rw-p")
    libc = Mapping(s.libc_base, s.libc_base + len(s.libc_bytes), "/usr/lib/x86_64-linux-gnu/libc.so.6",
                   perms="rw-p")
    s.anchors.mappings = lambda: ([heap_map, libc], "test")
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100)]
    regions, loose = places.layout_regions(s.heap())
    lines = fits(render.layout_lines(regions, loose, Style(False)))
    assert lines[0].startswith(f"{s.sbrk_base:#x}-{s.heap_end:#x}") and lines[0].endswith(" rw-p [heap]")
    assert f"  {s.sbrk_base:#x}-{s.heap_end:#x} main arena's heap" in lines
    assert f"  {s.tcache:#x} thread 1's tcache" in lines
    assert f"  {s.arena:#x}-{s.arena + 0x898:#x} main_arena (main arena, thread 1)" in lines  # sizeof 2.36
    assert lines[-2:] == ["in no mapping gdb lists:", "  0x7ffffffde100 thread 1's stack pointer (LWP 101)"]


def test_past_a_damaged_size_is_the_heap_not_a_chunk():
    s, c = built()
    s.poke(c["used"] + 8, 0x9)  # a size below MINSIZE: the walk breaks at this chunk...
    inside = c["used"] + 0x18  # ...so the rest of it is in no chunk the walk can vouch for
    p = places.describe(s.heap(), inside, no_symbol)
    assert (p.kind, p.arena, p.offset, p.chunk) == ("heap", s.arena, inside - s.sbrk_base, None)
    assert fits(render.where_lines(p, Style(False)))[0] == f"{inside:#x} is in a heap of arena " \
                                                          f"{s.arena:#x}, in no chunk"
    # and the walk resumes at the next chunk a bin lists or top: the guard is a chunk again
    assert places.describe(s.heap(), c["guard"] + 4, no_symbol).kind == "chunk"


def test_i386_offsets():
    """i386, 2.36: tcache counts are 64 uint16 (0x80 bytes), entries 4-byte pointers after them;
    malloc_state: mutex, flags, have_fastchunks 0..0xc, fastbinsY 0xc (NFASTBINS 11 on i386),
    top 0x38, last_remainder 0x3c, bins 0x40."""
    b = HeapBuilder((2, 36), 4)
    b.chunk(0x20)
    s = b.build()
    heap, tcache = s.heap(), s.tcache
    assert tcache is not None
    e = places.describe(heap, tcache + 0x80 + 3 * 4, no_symbol)
    assert (e.kind, e.field, e.chunk) == ("tcache", "entries[3]", tcache - 8)
    assert places.describe(heap, s.arena + 0x38, no_symbol).field == "top"
    assert places.describe(heap, s.arena + 0x40 + 5 * 4, no_symbol).meaning == "small[3]'s header: its bk (last chunk)"


def test_layout_items_of_a_main_and_a_thread_arena():
    """heap layout's items on tests/test_thread_arena.py's arenas, by hand: main_arena's
    malloc_state is 0x898 bytes and mp_ 0x88 (2.36, x86-64); the thread heap's heap_info at H
    with size 0x10000 of its mprotect_size 0x21000, reserved up to HEAP_MAX_SIZE (64 MiB)."""
    from tests.test_thread_arena import ARENA_T, H, with_thread_arena

    s, heap = with_thread_arena(info_size=0x10000)
    got = [(i.start, i.end, i.what) for i in places.layout_items(heap)]
    assert got == [
        (s.sbrk_base, s.heap_end, "main arena's heap"),
        (s.sbrk_base + 0x10, s.sbrk_base + 0x10, "the selected thread's tcache"),
        (s.top, s.top, "top chunk (main arena)"),
        (H, H + 0x10000, f"heap of arena {ARENA_T:#x}: in use (size)"),
        (ARENA_T, ARENA_T + 0x898, f"malloc_state (arena {ARENA_T:#x})"),
        (H + 0x930, H + 0x930, f"top chunk (arena {ARENA_T:#x})"),
        (H + 0x10000, H + 0x21000, "  writable, unused (mprotect_size)"),
        (H + 0x21000, H + 0x4000000, "  reserved, not writable (HEAP_MAX_SIZE)"),
        (s.arena, s.arena + 0x898, "main_arena (main arena)"),
        (s.mp, s.mp + 0x88, "mp_ (malloc's parameters)"),
    ]
