"""Edge cases with exact expectations: the option parser's messages and values, and the mmapped
chunk rules (a header glibc's sysmalloc_mmap would write; a core's PT_LOAD segments)."""

import struct

import pytest

from gdb_heap.args import parse, parse_count
from gdb_heap.errors import HeapError
from gdb_heap.layouts import layout_for
from gdb_heap.mappings import Mapping
from gdb_heap.mmapped import core_segments, mapping_of, mmapped_header, mmapped_span, scan

# -- options --------------------------------------------------------------------------------------


def test_flag_is_false_not_none_when_absent():
    assert parse("heap chunks", "", ("--json",)).flag("--json") is False


def test_value_that_looks_like_an_option_is_not_taken():
    with pytest.raises(HeapError) as e:
        parse("heap chunks", "--limit --json", ("--json",), ("--limit",))
    assert str(e.value) == "--limit needs a value; see help heap chunks"
    assert parse("heap chunks", "--limit -1", (), ("--limit",)).value("--limit") == "-1"


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(HeapError) as e:
        parse("heap bins", "--bogus", ("--json", "--all-arenas"), ("--arena",))
    assert str(e.value) == ("unknown option '--bogus' for heap bins; its options are: --json, --all-arenas, "
                            "--arena VALUE")
    with pytest.raises(HeapError) as e:
        parse("heap", "--x", ())
    assert str(e.value) == "unknown option '--x' for heap; its options are: none"


def test_counts_decimal_hex_and_leading_zeros():
    assert parse_count("heap chunks", "010") == 10  # decimal, not octal (int(.., 0) refuses it)
    assert parse_count("heap chunks", "0x10") == 16
    assert parse_count("heap chunks", "0") == 0


# -- mmapped chunks -----------------------------------------------------------------------------

L64 = layout_for((2, 36), 8)
L43 = layout_for((2, 43), 8)
L32 = layout_for((2, 36), 4)
PAGE = 0x1000


def test_mmapped_span():
    assert mmapped_span(L64, 0, 0x31000) == 0x31000
    assert mmapped_span(L64, 0x10, 0x30FF0) == 0x31000
    assert mmapped_span(L43, 0, 0x30FF0) == 0x31000  # 2.43: the size leaves out a 16-byte header at the end


@pytest.mark.parametrize("chunk, prev_size, size_field, limit, want", [
    (0x7FFFF7DC7000, 0, 0x31002, None, True),
    (0x7FFFF7DC7000, 0, 0x31002, 0x7FFFF7DF8000, True),  # ends exactly at the limit
    (0x7FFFF7DC7000, 0, 0x31002, 0x7FFFF7DF7FFF, False),
    (0x7FFFF7DC7000, 0, 0x31000, None, False),  # IS_MMAPPED clear
    (0x7FFFF7DC7000, 0, 0x31006, None, False),  # NON_MAIN_ARENA set
    (0x7FFFF7DC7000, 0, 0x31003, None, True),  # PREV_INUSE does not matter
    (0x7FFFF7DC7008, 0, 0x31002, None, False),  # user pointer not aligned
    (0x7FFFF7DC7010, 0x10, 0x30FF2, None, True),  # slack before the chunk: the mapping still starts on a page
    (0x7FFFF7DC7010, 0x8, 0x30FF2, None, False),  # the mapping would start mid-page
    (0x7FFFF7DC7000, 0, 0x30FF2, None, False),  # not whole pages
])
def test_mmapped_header(chunk, prev_size, size_field, limit, want):
    assert mmapped_header(L64, chunk, prev_size, size_field, limit) is want


def test_mmapped_header_minimum_size():
    assert mmapped_header(L64, 0x1000, 0, 0x12, None) is False  # below MINSIZE
    assert mmapped_header(L32, 0x1008, 8, 0xFF8 | 2, None) is True  # i386: chunk at +8, user pointer aligned
    assert mmapped_header(L32, 0x1000, 0, 0x1002, None) is False  # i386: user pointer 0x1008, not 16-aligned


def test_core_segments():
    def phdr(t, flags, vaddr, filesz, memsz):
        return struct.pack("<IIQQQQQQ", t, flags, 0, vaddr, vaddr, filesz, memsz, 0x1000)

    head = (b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, 4,
                                                             64, 0, 0))
    data = head + phdr(4, 0, 0, 0x100, 0) + phdr(1, 6, 0x10000, 0x2000, 0x2000) + \
        phdr(1, 4, 0x20000, 0x1000, 0x3000) + phdr(1, 0, 0x30000, 0, 0)
    segs = core_segments(data)
    assert [(m.start, m.end, m.path, m.readable, m.missing_from, m.writable) for m in segs] == [
        (0x10000, 0x12000, "", True, None, True),
        (0x20000, 0x23000, "", True, 0x21000, False),  # 0x1000 of 0x3000 bytes saved: the rest is missing
    ]
    assert mapping_of(segs, 0x10000) is segs[0] and mapping_of(segs, 0x11FFF) is segs[0]
    assert mapping_of(segs, 0x12000) is None and mapping_of(segs, 0xFFFF) is None


def test_scan_skips_heaps_and_named_mappings():
    from gdb_heap.memory import ImageMemory, Reader

    mapping = bytearray(2 * PAGE)
    mapping[8:16] = (PAGE | 2).to_bytes(8, "little")  # chunk 0x10000, one page
    mapping[PAGE + 8:PAGE + 16] = (PAGE | 2).to_bytes(8, "little")  # chunk 0x11000, one page
    reader = Reader(ImageMemory({0x10000: bytes(mapping)}), 8)
    m = Mapping(0x10000, 0x12000)
    chunks, unreadable = scan(reader, L64, [m])
    assert [(c.address, c.user_address, c.mapping_start, c.mapping_end) for c in chunks] == [
        (0x10000, 0x10010, 0x10000, 0x11000), (0x11000, 0x11010, 0x11000, 0x12000)]
    assert unreadable == []
    assert scan(reader, L64, [m], skip=[(0x10000, 0x10001)])[0] == []  # starts right at a skipped range
    assert len(scan(reader, L64, [m], skip=[(0xF000, 0x10000)])[0]) == 2  # ends right before it
    assert scan(reader, L64, [Mapping(0x10000, 0x12000, "[heap]")])[0] == []
    assert scan(reader, L64, [Mapping(0x10000, 0x12000, readable=False)])[0] == []
    gone = Mapping(0x50000, 0x51000)
    chunks, unreadable = scan(reader, L64, [gone, m])
    assert len(chunks) == 2 and unreadable == [gone]  # one unreadable mapping does not stop the scan
