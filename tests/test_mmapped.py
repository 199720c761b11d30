"""The mmapped-chunk scan on synthetic memory: mappings in, chunks out (no gdb)."""

import struct

from gdb_heap.layouts import layout_for
from gdb_heap.memory import ImageMemory, Reader
from gdb_heap.mappings import Mapping
from gdb_heap.mmapped import core_segments, find_all, scan

L64 = layout_for((2, 36), 8)
PAGE = 4096
IS_MMAPPED = 2


def image(regions):
    return Reader(ImageMemory({a: bytearray(d) for a, d in regions.items()}), 8)


def mmapped_chunk(length, prev_size=0):
    """A mapping of `length` bytes holding one mmapped chunk as glibc writes it."""
    data = bytearray(length)
    struct.pack_into("<QQ", data, prev_size, prev_size, (length - prev_size) | IS_MMAPPED)
    return data


def test_one_chunk_per_mapping_and_merged_mappings():
    a, b = mmapped_chunk(0x31000), mmapped_chunk(0x4a000)
    base = 0x7f0000000000
    reader = image({base: a + b, base + 0x100000: mmapped_chunk(0x2000)})
    mappings = [Mapping(base, base + len(a) + len(b)), Mapping(base + 0x100000, base + 0x102000)]
    chunks, unreadable = scan(reader, L64, mappings)
    assert unreadable == []
    assert [(c.address, c.size_field & ~7, c.user_address, c.mapping_start, c.mapping_end) for c in chunks] == [
        (base, 0x31000, base + 16, base, base + 0x31000),  # the kernel merged these two mappings
        (base + 0x31000, 0x4a000, base + 0x31010, base + 0x31000, base + 0x7b000),
        (base + 0x100000, 0x2000, base + 0x100010, base + 0x100000, base + 0x102000)]


def test_memalign_chunk_is_found_past_the_stale_header():
    """memalign moves the chunk up inside its mapping and leaves the first header behind."""
    base = 0x7f0000000000
    data = mmapped_chunk(0x40000)
    lead = 0x10000 - 16  # the user pointer lands on a 64 KiB boundary
    struct.pack_into("<QQ", data, lead, lead, (0x40000 - lead) | IS_MMAPPED)
    (c,), _ = scan(image({base: data}), L64, [Mapping(base, base + len(data))])
    assert (c.address, c.prev_size, c.user_address % 0x10000, c.mapping_start, c.mapping_end) == (
        base + lead, lead, 0, base, base + 0x40000)


def test_what_is_not_an_mmapped_chunk():
    base = 0x7f0000000000
    heap_chunk = bytearray(PAGE)
    struct.pack_into("<QQ", heap_chunk, 0, 0, 0x291)  # a heap chunk: no IS_MMAPPED
    too_long = mmapped_chunk(PAGE)
    struct.pack_into("<Q", too_long, 8, 0x3000 | IS_MMAPPED)  # runs past its mapping
    thread_heap = bytearray(PAGE)
    struct.pack_into("<QQQQ", thread_heap, 0, base + 0x30, 0, 0x21000, 0x21000)  # heap_info
    stack = bytearray(PAGE)  # zeros
    regions = {base: heap_chunk, base + 0x10000: too_long, base + 0x20000: thread_heap, base + 0x30000: stack,
               base + 0x40000: mmapped_chunk(PAGE), base + 0x50000: mmapped_chunk(PAGE)}
    mappings = [Mapping(a, a + PAGE) for a in regions]
    mappings[4].path = "/usr/lib/libfoo.so"  # file-backed: skipped
    mappings.append(Mapping(base + 0x60000, base + 0x61000))  # not in memory (a core without it)
    mappings.append(Mapping(base + 0x70000, base + 0x71000, readable=False))  # PROT_NONE: not looked at
    chunks, unreadable = scan(image(regions), L64, mappings, skip=[(base + 0x20000, base + 0x21000)])
    assert [c.address for c in chunks] == [base + 0x50000]
    assert [(m.start, m.end) for m in unreadable] == [(base + 0x60000, base + 0x61000)]


def test_a_damaged_chain_stops_inside_its_mapping():
    base = 0x7f0000000000
    data = mmapped_chunk(0x2000) + bytearray(0x2000)  # second header zeroed
    chunks, _ = scan(image({base: data}), L64, [Mapping(base, base + len(data))])
    assert [c.address for c in chunks] == [base]


def test_core_segments():
    """PT_LOAD program headers of an ELF64 core: one mapping each, PF_R as readable, PF_W as writable."""
    phdrs = [(1, 6, 0x1000, 0x555555554000, 0, 0x1000, 0x1000, 0x1000),  # rw
             (4, 0, 0x2000, 0, 0, 0x100, 0, 1),  # PT_NOTE: not a mapping
             (1, 0, 0x3000, 0x7fffe8021000, 0, 0, 0x3fdf000, 0x1000)]  # ---p, no bytes in the core
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", head, 0x20, 64)
    struct.pack_into("<HH", head, 0x36, 56, len(phdrs))
    data = bytes(head) + b"".join(struct.pack("<IIQQQQQQ", *p) for p in phdrs)
    assert core_segments(data) == [Mapping(0x555555554000, 0x555555555000, "", True, None, True),
                                   Mapping(0x7fffe8021000, 0x7fffec000000, "", False, 0x7fffe8021000, False)]
    assert core_segments(b"not an elf") == []
    assert core_segments(data[:100]) == []  # headers cut short: none taken
    tiny = bytearray(data)
    struct.pack_into("<H", tiny, 0x36, 8)  # e_phentsize smaller than one ELF64 program header
    assert core_segments(bytes(tiny)) == []


def test_views_say_what_is_missing():
    """Text and JSON of a scan that found fewer chunks than glibc counts, and an unreadable mapping."""
    from gdb_heap import render
    from gdb_heap.heap import MmappedView
    from gdb_heap.style import Style

    base = 0x7f0000000000
    reader = image({base: mmapped_chunk(0x2000)})
    chunks, unreadable = scan(reader, L64, [Mapping(base, base + 0x2000), Mapping(base + 0x10000, base + 0x11000)])
    view = MmappedView(chunks, unreadable, "test mappings", 2, 0x3000)
    doc = render.mmapped_doc(view)
    assert doc == {"chunks": [{"address": base, "size": 0x2000, "user_address": base + 16, "mapping_start": base,
                               "mapping_end": base + 0x2000, "prev_size": 0}],
                   "glibc_count": 2, "glibc_bytes": 0x3000,
                   "unreadable": [{"start": base + 0x10000, "end": base + 0x11000}], "page_scan": None}
    text = "\n".join(render.mmapped_lines(view, Style(False)))
    assert "1 mmapped chunk found (8.0 KiB mapped)" in text and "glibc counts 2 (mp_.n_mmaps)" in text
    assert "the scan found 1 (8.0 KiB mapped) but glibc counts 2 (12.0 KiB)" in text
    assert f"mapping {base + 0x10000:#x}-{base + 0x11000:#x} is not readable" in text


def test_i386_chunks_start_eight_bytes_in():
    """i386: chunk2mem of a fresh mapping is 8 bytes off MALLOC_ALIGNMENT (16), so sysmalloc
    moves the chunk 8 bytes up and records that correction as prev_size (malloc.c, sysmalloc's
    mmap path); memalign then adds its own slack to the same prev_size."""
    L32 = layout_for((2, 36), 4)
    base = 0xF7B00000
    plain = bytearray(0x31000)
    struct.pack_into("<II", plain, 8, 8, (0x31000 - 8) | IS_MMAPPED)
    aligned = bytearray(0x40000)
    struct.pack_into("<II", aligned, 8, 8, (0x40000 - 8) | IS_MMAPPED)  # the header left behind
    slack = 0x10000 - 8  # the user pointer on a 64 KiB boundary
    struct.pack_into("<II", aligned, slack, slack, (0x40000 - slack) | IS_MMAPPED)
    reader = Reader(ImageMemory({base: plain + aligned}), 4)
    chunks, _ = scan(reader, L32, [Mapping(base, base + 0x71000)])
    assert [(c.address, c.prev_size, c.size_field & ~7, c.user_address, c.mapping_start, c.mapping_end)
            for c in chunks] == [
        (base + 8, 8, 0x31000 - 8, base + 16, base, base + 0x31000),
        (base + 0x31000 + slack, slack, 0x40000 - slack, base + 0x41000, base + 0x31000, base + 0x71000)]


def merged_image():
    """One merged anonymous mapping: 3 pages of the program's own (a decoy header on the second:
    IS_MMAPPED, but its size runs past the mapping), then two mmapped chunks, then 2 pages of
    the program's own again, then a chunk glibc wrote after them."""
    base = 0x7f0000000000
    own = bytearray(3 * PAGE)
    struct.pack_into("<QQ", own, PAGE, 0, (1 << 30) | IS_MMAPPED)
    data = own + mmapped_chunk(0x2000) + mmapped_chunk(0x5000) + bytearray(2 * PAGE) + mmapped_chunk(0x3000)
    return base, data


def test_page_scan_finds_chunks_after_a_mapping_start_that_is_not_one():
    base, data = merged_image()
    reader = image({base: data})
    maps = [Mapping(base, base + len(data))]
    assert scan(reader, L64, maps)[0] == []  # the mapping does not start with a chunk
    # glibc's counters (written here by hand): 3 chunks, 0x2000 + 0x5000 + 0x3000 bytes.
    chunks, unreadable, pages = find_all(reader, L64, maps, [], 3, 0xa000)
    first = base + 3 * PAGE
    assert [(c.address, c.mapping_end - c.mapping_start) for c in chunks] == [
        (first, 0x2000), (first + 0x2000, 0x5000), (first + 0x9000, 0x3000)]
    assert unreadable == [] and pages is not None and pages.found == 3 and pages.complete
    assert pages.scanned == len(data)  # one bulk read of the whole mapping, no page read twice


def test_page_scan_does_not_read_a_big_chunk_past_the_block_holding_its_header():
    base = 0x7f0000000000
    data = bytearray(PAGE) + mmapped_chunk(4 << 20) + mmapped_chunk(PAGE)
    maps = [Mapping(base, base + len(data))]
    chunks, _, pages = find_all(image({base: data}), L64, maps, [], 2, (4 << 20) + PAGE)
    assert [c.address for c in chunks] == [base + PAGE, base + PAGE + (4 << 20)]
    # The first block (1 MiB, PAGE_SCAN_BLOCK) holds the big chunk's header; the next read starts
    # at its end, one page before the mapping's.
    assert pages is not None and pages.scanned == (1 << 20) + PAGE


def test_page_scan_is_skipped_when_the_starts_add_up_and_stops_when_the_count_does():
    base, data = merged_image()
    reader = image({base + 3 * PAGE: data[3 * PAGE:]})
    maps = [Mapping(base + 3 * PAGE, base + len(data))]
    assert find_all(reader, L64, maps, [], 2, 0x7000)[2] is None  # the chain from the start is enough
    chunks, _, pages = find_all(reader, L64, maps, [], 3, 0xa000)
    assert len(chunks) == 3 and pages is not None and pages.found == 1


def test_page_scan_budget_and_heaps():
    """A budget too small to cover the mapping says so; an arena heap inside a mapping is not read."""
    base, data = merged_image()
    reader = image({base: data})
    maps = [Mapping(base, base + len(data))]
    chunks, _, pages = find_all(reader, L64, maps, [], 3, 0xa000, budget=2 * PAGE)
    assert chunks == [] and pages is not None and not pages.complete and pages.scanned <= 2 * PAGE
    heap = (base + 3 * PAGE, base + 10 * PAGE)  # as if the first two chunks were a thread's heap
    chunks, _, pages = find_all(reader, L64, maps, [heap], 3, 0xa000)
    assert [c.address for c in chunks] == [base + 12 * PAGE] and pages is not None and pages.complete


def test_page_scan_i386():
    """i386: each page's header sits 8 bytes in, its prev_size 8 (sysmalloc's correction)."""
    L32 = layout_for((2, 36), 4)
    base = 0xF7B00000
    data = bytearray(2 * PAGE + 0x3000)
    struct.pack_into("<II", data, 2 * PAGE + 8, 8, (0x3000 - 8) | IS_MMAPPED)
    reader = Reader(ImageMemory({base: data}), 4)
    chunks, _, pages = find_all(reader, L32, [Mapping(base, base + len(data))], [], 1, 0x3000)
    assert [(c.address, c.prev_size) for c in chunks] == [(base + 2 * PAGE + 8, 8)] and pages is not None


def test_page_scan_view_says_when_counts_still_differ():
    from gdb_heap import render
    from gdb_heap.heap import MmappedView
    from gdb_heap.style import Style

    base, data = merged_image()
    reader = image({base: data})
    maps = [Mapping(base, base + len(data))]
    chunks, unreadable, pages = find_all(reader, L64, maps, [], 4, 0xb000)
    text = "\n".join(render.mmapped_lines(MmappedView(chunks, unreadable, "t", 4, 0xb000, pages), Style(False)))
    assert "3 of them found at page starts inside merged anonymous mappings" in text
    assert ("the scan found 3 (40.0 KiB mapped) but glibc counts 4 (44.0 KiB) after reading every page start "
            "of the anonymous mappings") in text
    chunks, unreadable, pages = find_all(reader, L64, maps, [], 3, 0xa000, budget=PAGE)
    text = "\n".join(render.mmapped_lines(MmappedView(chunks, unreadable, "t", 3, 0xa000, pages), Style(False)))
    assert "the page scan stopped after reading 0 B (its limit), so some may be unread" in text
