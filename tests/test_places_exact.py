"""places.py's answers compared whole: every key of `heap where`'s Place on hand-built heaps.

Offsets by hand from glibc 2.36's structs on x86-64: heap_info (ar_ptr 0, prev 8, size 0x10,
mprotect_size 0x18, pagesize 0x20, pad to 0x30); malloc_state (mutex 0, flags 4,
have_fastchunks 8, 4 bytes of padding, fastbinsY 0x10, top 0x60, bins 0x70 (254 words),
binmap 0x860 (4 unsigned ints), next 0x870 .. max_system_mem 0x890); malloc_par (trim_threshold
0, top_pad 8, mmap_threshold 0x10); HEAP_MAX_SIZE 64 MiB.  The thread arena is
tests/test_thread_arena.py's.
"""

from __future__ import annotations

from typing import List, Tuple

from gdb_heap import places, render
from gdb_heap.heap import ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.style import Style
from gdb_heap.symbols import Symbol
from tests.synthetic import noncontiguous
from tests.test_places import built, no_symbol
from tests.test_thread_arena import ARENA_T, H, with_thread_arena

KEYS = ("address", "kind", "chunk", "offset", "arena", "thread", "field", "inner", "symbol", "mapping",
        "meaning", "expression")


def fields(p: places.Place) -> Tuple[object, ...]:
    return tuple(getattr(p, k) for k in KEYS)


def test_a_thread_heaps_heap_info_and_its_reserve():
    s, heap = with_thread_arena(mprotect_size=0x30000)
    size = places.describe(heap, H + 0x13, no_symbol)  # heap_info.size, its 4th byte
    assert fields(size) == (H + 0x13, "heap_info", None, 0x13, ARENA_T, None, "size", 3, None, None,
                            f"of a heap of arena {ARENA_T:#x}", f"((heap_info *) {H:#x})->size")
    # the heap's chunks end at H + 0x21000 (its size); mprotect_size 0x30000; HEAP_MAX_SIZE 0x4000000
    for address, meaning in (
            (H + 0x21000, "made writable (below mprotect_size), not yet part of the heap"),
            (H + 0x2FFFF, "made writable (below mprotect_size), not yet part of the heap"),
            (H + 0x30000, "reserved for the heap to grow into (HEAP_MAX_SIZE), not writable yet"),
            (H + 0x3FFFFFF, "reserved for the heap to grow into (HEAP_MAX_SIZE), not writable yet")):
        p = places.describe(heap, address, no_symbol)
        assert fields(p) == (address, "heap_reserve", None, address - H, ARENA_T, None, None, 0, None, None,
                             meaning, ""), hex(address)
    assert places.describe(heap, H + 0x4000000, no_symbol).kind == "nothing"
    assert places.describe(heap, H + 0x20FFF, no_symbol).kind == "chunk"  # top's last byte


def test_a_thread_arenas_malloc_state_fields():
    s, heap = with_thread_arena()
    top = places.describe(heap, ARENA_T + 0x60, no_symbol)
    assert fields(top) == (ARENA_T + 0x60, "arena", None, 0x60, ARENA_T, None, "top", 0, None, None,
                           "the top chunk", f"((struct malloc_state *) {ARENA_T:#x})->top")
    pad = places.describe(heap, ARENA_T + 0xD, no_symbol)  # after have_fastchunks (an int)
    assert (pad.kind, pad.field, pad.inner, pad.meaning, pad.offset) == ("arena", "(padding)", 0, "", 0xD)
    binmap = places.describe(heap, ARENA_T + 0x864 + 2, no_symbol)
    assert (binmap.field, binmap.inner, binmap.meaning) == ("binmap[1]", 2, "the bitmap of bins 32..63")
    assert places.describe(heap, ARENA_T + 0x860, no_symbol).meaning == "the bitmap of bins 0..31"
    mem = places.describe(heap, ARENA_T + 0x888, no_symbol)
    assert (mem.field, mem.meaning) == ("system_mem", "bytes got from the system")
    assert places.describe(heap, ARENA_T + 0x898, no_symbol).kind != "arena"  # one past its end
    assert places.describe(heap, s.arena + 0, no_symbol).meaning == "the arena's lock"
    assert places.describe(heap, s.arena - 1, no_symbol).arena != s.arena


def test_malloc_par():
    s, _ = built()
    heap = s.heap()
    p = places.describe(heap, s.mp + 0x13, no_symbol)
    assert fields(p) == (s.mp + 0x13, "malloc_par", None, 0x13, None, None, "mmap_threshold", 3, None, None,
                         "", "mp_.mmap_threshold")
    assert places.describe(heap, s.mp, no_symbol).field == "trim_threshold"
    assert places.describe(heap, s.mp + 0x88, no_symbol).kind != "malloc_par"  # sizeof(mp_) 0x88 in 2.36


def test_symbol_text_and_describes_defaults():
    s, _ = built()
    s.anchors.symbol = lambda a: Symbol("mp_", a - s.mp, f"mp_ + {a - s.mp} in section .data")
    heap = s.heap()
    assert places.describe(heap, s.mp + 8).symbol == "mp_+8"  # the anchors' lookup when none is given
    assert places.describe(heap, s.mp).symbol == "mp_"


def test_the_tcache_of_a_thread_and_of_no_thread():
    s, _ = built()
    threads = [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100)]
    s.anchors.threads = lambda: threads
    heap = s.heap()
    p = places.describe(heap, s.tcache + 0x80 + 8 * 5 + 1, no_symbol)
    assert fields(p) == (p.address, "tcache", s.tcache - 0x10, 0xA9, None, 1, "entries[5]", 1, None, None,
                         "the head of tcache[5]", f"((tcache_perthread_struct *) {s.tcache:#x})->entries[5]")
    assert p.owner is threads[0]
    s.anchors.threads = lambda: []
    q = places.describe(s.heap(), s.tcache + 2 * 7, no_symbol)
    assert (q.kind, q.thread, q.owner, q.field, q.meaning) == ("tcache", None, None, "counts[7]",
                                                                "the count of tcache[7]")


def test_a_stack_owner_and_its_offset():
    s, _ = built()
    stack = Mapping(0x7FFFFFFDE000, 0x7FFFFFFFF000, "[stack]")
    t = ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE000)  # $sp at the mapping's first byte
    s.anchors.mappings = lambda: ([stack], "test")
    s.anchors.threads = lambda: [t]
    p = places.describe(s.heap(), 0x7FFFFFFDE040, no_symbol)
    assert fields(p) == (0x7FFFFFFDE040, "stack", None, 0x40, None, 1, None, 0, None, "[stack]", "", "")
    assert p.owner is t and p.span is stack
    # a $sp one past the mapping's end is another mapping's
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFFF000)]
    assert places.describe(s.heap(), 0x7FFFFFFDE040, no_symbol).kind == "mapping"


def test_two_stacks_in_one_mapping_by_thread_pointer():
    """Thread 2's allocation ends at the page after its thread pointer 0x7ffff7bff6c0, i.e.
    0x7ffff7c00000; thread 3's at 0x7ffff7400000.  A thread pointer outside the mapping falls
    back to $sp: thread 4's $sp 0x7ffff6bfe000 puts its end at 0x7ffff6bff000."""
    s, _ = built()
    span = Mapping(0x7FFFF6400000, 0x7FFFF7C00000, "")
    s.anchors.mappings = lambda: ([span], "test")
    s.anchors.threads = lambda: [
        ThreadInfo(2, 102, False, None, None, 0x7FFFF7BFEE00, 0x7FFFF7BFF6C0),
        ThreadInfo(3, 103, False, None, None, 0x7FFFF73FEE00, 0x7FFFF73FF6C0),
        ThreadInfo(4, 104, False, None, None, 0x7FFFF6BFE000, 0x10)]
    heap = s.heap()
    for address, thread in ((0x7FFFF6BFEFFF, 4), (0x7FFFF6BFF000, 3), (0x7FFFF7BFFFFF, 2)):
        assert places.describe(heap, address, no_symbol).thread == thread, hex(address)
    # above every thread's end: no owner, only the mapping
    s.anchors.threads = lambda: [ThreadInfo(3, 103, False, None, None, 0x7FFFF73FEE00, 0x7FFFF73FF6C0),
                                 ThreadInfo(4, 104, False, None, None, 0x7FFFF6BFE000, None)]
    assert places.describe(s.heap(), 0x7FFFF7400000, no_symbol).kind == "mapping"
    assert places.describe(s.heap(), 0x7FFFF6BFE010, no_symbol).offset == 0x10


def test_the_fencepost_and_the_region_end():
    from tests.synthetic import every_bin_heap
    _, s = every_bin_heap((2, 36), 8)
    old_top, old_size = s.top, s.top_size
    s = noncontiguous(s, 0x7F0000000000)
    heap = s.heap()
    # sysmalloc's fencepost: old_size = (old_size - 2 * CHUNK_HDR_SZ) & ~15 past old top, 0x10 + 0x10 bytes
    fence = old_top + ((old_size - 0x20) & ~15)
    fence_text = "glibc's fencepost, the two chunks ending a region malloc left behind"
    assert s.heap_end == fence + 0x20  # the [heap] mapping ends with the pair
    # the walk's region ends at the fencepost; a header's worth past it is still that region's
    for address, mapping in ((fence, "[heap]"), (fence + 0x1F, "[heap]"), (fence + 0x2F, None)):
        p = places.describe(heap, address, no_symbol)
        assert fields(p) == (address, "heap", None, address - s.sbrk_base, s.arena, None, None, 0, None, mapping,
                             fence_text, ""), hex(address)
    assert places.describe(heap, fence + 0x30, no_symbol).meaning != fence_text


def text(p: places.Place) -> List[str]:
    return list(render.where_lines(p, Style(False)))


def test_where_text_of_malloc_structs_and_reserve():
    s, heap = with_thread_arena(mprotect_size=0x30000)
    assert text(places.describe(heap, H + 0x13, no_symbol)) == [
        f"{H + 0x13:#x} is ((heap_info *) {H:#x})->size",
        f"  meaning   of a heap of arena {ARENA_T:#x}",
        "  offset    +0x13 from the start of the struct"]
    assert text(places.describe(heap, ARENA_T + 0x60, no_symbol)) == [
        f"{ARENA_T + 0x60:#x} is ((struct malloc_state *) {ARENA_T:#x})->top",
        "  meaning   the top chunk",
        "  offset    +0x60 from the start of the struct"]
    assert text(places.describe(heap, s.mp + 0x10, no_symbol)) == [  # no meaning line
        f"{s.mp + 0x10:#x} is mp_.mmap_threshold", "  offset    +0x10 from the start of the struct"]
    assert text(places.describe(heap, H + 0x30000, no_symbol)) == [
        f"{H + 0x30000:#x} is past the chunks of a heap of arena {ARENA_T:#x}",
        "  meaning   reserved for the heap to grow into (HEAP_MAX_SIZE), not writable yet",
        "  offset    +0x30000 from its heap_info"]


def test_where_text_of_a_tcache_field_with_and_without_its_thread():
    s, _ = built()
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100)]
    assert text(places.describe(s.heap(), s.tcache + 0x80, no_symbol)) == [
        f"{s.tcache + 0x80:#x} is ((tcache_perthread_struct *) {s.tcache:#x})->entries[0]",
        f"  tcache    thread 1's (LWP 101), in chunk {s.tcache - 0x10:#x}",
        "  meaning   the head of tcache[0]",
        "  offset    +0x80 from the start of the struct"]
    s.anchors.threads = lambda: []
    assert text(places.describe(s.heap(), s.tcache + 2, no_symbol))[1] == (
        f"  tcache    the selected thread's, in chunk {s.tcache - 0x10:#x}")


def test_where_text_of_a_mmapped_like_chunk_a_stack_a_symbol_a_mapping_and_nothing():
    s, c = built()
    stack = Mapping(0x7FFFFFFDE000, 0x7FFFFFFFF000, "[stack]")
    libc = Mapping(0x7FFFF7A00000, 0x7FFFF7A10000, "")
    s.anchors.mappings = lambda: ([stack, libc], "test")
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100)]
    heap = s.heap()
    assert text(places.describe(heap, 0x7FFFFFFDE0F0, no_symbol)) == [
        "0x7ffffffde0f0 is in thread 1's stack (LWP 101)", "  offset    -0x10 from its $sp",
        "  mapping   0x7ffffffde000-0x7ffffffff000 [stack]"]
    assert text(places.describe(heap, 0x7FFFF7A00123, lambda a: Symbol("g", 3, "g + 3 in section .data"))) == [
        "0x7ffff7a00123 is g+3", "  mapping   0x7ffff7a00000-0x7ffff7a10000 (anonymous)"]
    assert text(places.describe(heap, 0x7FFFF7A00123, no_symbol)) == [
        "0x7ffff7a00123 is in a mapping, 0x123 bytes from its start",
        "  mapping   0x7ffff7a00000-0x7ffff7a10000 (anonymous)"]
    assert text(places.describe(heap, 0x10, no_symbol)) == ["0x10 is in no mapping of the process: nothing is there"]
    # a chunk: the headline, offsets from the chunk and the user pointer, its size and arena
    assert text(places.describe(heap, c["used"], lambda a: Symbol("buf", 0, "buf in section .bss"))) == [
        f"{c['used']:#x} is the chunk {c['used']:#x} (in use)",
        f"  offset    +0x0 from the chunk, -0x10 from the user pointer {c['used'] + 0x10:#x}",
        "  size      0x40", f"  arena     {s.arena:#x} (main arena)", "  symbol    buf"]


def test_where_text_in_a_thread_arena_and_past_a_region():
    s, heap = with_thread_arena()
    chunk = H + 0x8D0
    assert text(places.describe(heap, chunk + 0x30 - 1, no_symbol)) == [
        f"{chunk + 0x2F:#x} is inside chunk {chunk:#x} (in use)",
        f"  offset    +0x2f from the chunk, +0x1f from the user pointer {chunk + 0x10:#x}",
        "  size      0x30", f"  arena     {ARENA_T:#x} (thread arena)"]
    from tests.synthetic import every_bin_heap
    _, s = every_bin_heap((2, 36), 8)
    old_top, old_size = s.top, s.top_size
    s = noncontiguous(s, 0x7F0000000000)
    fence = old_top + ((old_size - 0x20) & ~15)
    assert text(places.describe(s.heap(), fence + 8, no_symbol))[:3] == [
        f"{fence + 8:#x} is in a heap of arena {s.arena:#x}, in no chunk",
        "  meaning   glibc's fencepost, the two chunks ending a region malloc left behind",
        f"  offset    {fence + 8 - s.sbrk_base:+#x} from the heap's start"]


def test_layout_text_every_line():
    """heap layout on tests/test_places.py's heap: a mapping line is its range (29 columns: two
    14-column addresses and a dash), its size (9 columns, right), its protection and its name;
    an anonymous mapping has none.  sizeof(main_arena) is 0x898, sizeof(mp_) 0x88 (2.36)."""
    s, _ = built()
    heap_map = Mapping(s.sbrk_base, s.heap_end, "[heap]", perms="rw-p")
    libc = Mapping(s.libc_base, s.libc_base + 0x3000, "/usr/lib/x86_64-linux-gnu/libc.so.6", perms="rw-p")
    anon = Mapping(0x7FFFF7000000, 0x7FFFF7100000, "", perms="---p")
    s.anchors.mappings = lambda: ([heap_map, anon, libc], "test")
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100, 0x7FFFF7000040)]
    regions, loose = places.layout_regions(s.heap())
    assert s.heap_end - s.sbrk_base == 0x1000
    assert list(render.layout_lines(regions, loose, Style(False))) == [
        f"{s.sbrk_base:#x}-{s.heap_end:#x}   4.0 KiB rw-p [heap]",
        f"  {s.sbrk_base:#x}-{s.heap_end:#x} main arena's heap",
        f"  {s.tcache:#x} thread 1's tcache",
        f"  {s.top:#x} top chunk (main arena)",
        "0x7ffff7000000-0x7ffff7100000   1.0 MiB ---p",
        "  0x7ffff7000040 thread 1's thread pointer (TLS below it)",
        f"{s.libc_base:#x}-{s.libc_base + 0x3000:#x}  12.0 KiB rw-p libc.so.6",
        f"  {s.arena:#x}-{s.arena + 0x898:#x} main_arena (main arena, thread 1)",
        f"  {s.mp:#x}-{s.mp + 0x88:#x} mp_ (malloc's parameters)",
        "in no mapping gdb lists:",
        "  0x7ffffffde100 thread 1's stack pointer (LWP 101)"]
    short = Mapping(0x1000, 0x2000, "/x", perms="r--p")  # a shorter range is padded to the column
    s.anchors.mappings = lambda: ([short], "test")
    regions, loose = places.layout_regions(s.heap())
    assert list(render.layout_lines(regions, [], Style(False))) == [
        "0x1000-0x2000                   4.0 KiB r--p x"]


def test_threads_of_an_arena_in_layout():
    s, _ = built()
    for n, text in ((2, "threads 1, 2"), (3, "threads 1, 2, 3"), (4, "4 threads")):
        s.anchors.threads = (lambda n=n: [ThreadInfo(i, 100 + i, i == 1, s.tcache if i == 1 else None, s.arena)
                                          for i in range(1, n + 1)])
        items = [i.what for i in places.layout_items(s.heap()) if i.what.startswith("main_arena")]
        assert items == [f"main_arena (main arena, {text})"]
    s.anchors.threads = lambda: []
    items = [i.what for i in places.layout_items(s.heap()) if i.what.startswith("main_arena")]
    assert items == ["main_arena (main arena)"]


def test_layout_items_of_two_regions_an_mmapped_chunk_and_a_full_heap_info():
    from tests.synthetic import every_bin_heap
    from tests.test_where_mmapped import M, with_mmapped
    _, s = every_bin_heap((2, 36), 8)
    s = noncontiguous(s, 0x7F0000000000)
    items = [(i.start, i.end, i.what) for i in places.layout_items(s.heap())]
    assert (s.sbrk_base, s.heap_end, "main arena's heap (region 1)") in items
    assert (0x7F0000000000, 0x7F0000002000, "main arena's heap (region 2)") in items
    m = with_mmapped()
    assert (M, M + 0x2000, "mmapped chunk") in [(i.start, i.end, i.what) for i in places.layout_items(m.heap())]
    p = places.describe(m.heap(), M + 0x20, no_symbol)
    assert (p.kind, p.chunk, p.offset, p.arena) == ("mmapped", M, 0x20, None)
    # a thread heap whose mprotect_size is its size: no "writable, unused" item
    _, heap = with_thread_arena()
    whats = [i.what for i in places.layout_items(heap)]
    assert "  writable, unused (mprotect_size)" not in whats and "  reserved, not writable (HEAP_MAX_SIZE)" in whats


def test_offsets_of_zero_and_colours():
    s, c = built()
    stack = Mapping(0x7FFFFFFDE000, 0x7FFFFFFFF000, "[stack]")
    s.anchors.mappings = lambda: ([stack], "test")
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena, 0x7FFFFFFDE100)]
    heap = s.heap()
    assert text(places.describe(heap, s.arena, no_symbol))[-1] == "  offset    +0x0 from the start of the struct"
    assert text(places.describe(heap, 0x7FFFFFFDE100, no_symbol))[1] == "  offset    +0x0 from its $sp"
    st = Style(True)
    a = st("address", f"{c['used']:#x}")
    assert st("address", "x") != "x"
    assert list(render.where_lines(places.describe(heap, c["used"], no_symbol), st))[0] == (
        f"{a} is the chunk {a} (in use)")
    m = Mapping(0x1000, 0x2000, "/x", perms="r--p")
    region = places.Region(m, "x", [places.Item(0x1000, 0x1010, "a thing"), places.Item(0x1800, 0x1800, "a point")])
    assert list(render.layout_lines([region], [], st)) == [
        st("address", "0x1000-0x2000") + " " * 16 + " " + st("size", "  4.0 KiB") + " " + st("dim", "r--p") + " "
        + st("heading", "x"),
        "  " + st("address", "0x1000-0x1010") + " " * 16 + " a thing",
        "  " + st("address", "0x1800") + " a point"]
