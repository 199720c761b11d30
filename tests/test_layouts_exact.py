"""layouts.py's arithmetic at its edges, each value worked by hand from malloc.c (2.36 unless
named) and the struct offsets published in shared/reference/glibc-internals.md."""

from gdb_heap.layouts import compute_struct, layout_for, without_tcache

X64, I386 = layout_for((2, 36), 8), layout_for((2, 36), 4)


def test_field_at_names_the_field_its_element_and_the_byte_inside():
    ms = X64.malloc_state  # mutex 0, flags 4, have_fastchunks 8, (pad), fastbinsY 0x10, top 0x60, bins 0x70
    assert ms.field_at(0x60) == ("top", -1, 0)
    assert ms.field_at(0x63) == ("top", -1, 3)
    assert ms.field_at(0x78) == ("bins", 1, 0)
    assert ms.field_at(0x7C) == ("bins", 1, 4)
    assert ms.field_at(0xC) is None  # padding before the pointer array
    assert ms.field_at(0x898) is None  # past sizeof
    pair = compute_struct("pair", [("flag", "char", 1), ("links", "ptr", 2)], 8)
    assert pair.size == 24
    assert pair.field_at(0x10) == ("links", 1, 0) and pair.field_at(0x8) == ("links", 0, 0)
    assert pair.field_at(0) == ("flag", -1, 0) and pair.field_at(1) is None


def test_csize2tidx_in_glibcs_unsigned_arithmetic():
    """csize2tidx(x) = (x - MINSIZE + MALLOC_ALIGNMENT - 1) / MALLOC_ALIGNMENT: a size just past
    a bin's rounds up to the next bin."""
    assert [X64.csize2tidx(s) for s in (0x20, 0x21, 0x30, 0x31, 0x410)] == [0, 1, 1, 2, 63]
    assert [I386.csize2tidx(s) for s in (0x10, 0x11, 0x20, 0x21)] == [0, 1, 1, 2]


def test_first_chunk_rounds_up_never_down():
    """The first chunk at or after `start` whose user pointer (chunk + 2 * SIZE_SZ) is
    16-aligned."""
    assert X64.first_chunk(0x555555560000) == 0x555555560000
    assert X64.first_chunk(0x555555560001) == 0x555555560010
    assert X64.first_chunk(0x555555560007) == 0x555555560010
    assert X64.first_chunk(0x555555560009) == 0x555555560010
    assert I386.first_chunk(0x56560000) == 0x56560008
    assert I386.first_chunk(0x56560001) == 0x56560008
    assert I386.first_chunk(0x56560009) == 0x56560018


def test_mmapped_requests_for_real_chunk_sizes():
    """x86-64: a 0x2000 mapping is a chunk of 0x2000; nb + 8 in 0x1001..0x2000, nb a multiple
    of 16: nb 0x1000..0x1ff0, n = nb - 23 + 1 .. nb - 8: 0xfe9..0x1fe8.
    i386: sysmalloc maps ALIGN_UP(nb + SIZE_SZ + MALLOC_ALIGN_MASK, pagesize) and the chunk
    starts 8 bytes in (front_misalign: chunk2mem(mm) = mm + 8 is 8 mod 16), so a 0x2000 mapping
    is a chunk of 0x1ff8; nb + 19 in 0x1001..0x2000: nb 0xff0..0x1fe0, n = (nb - 19) + 1 - 15 ..
    nb - 4: 0xfdd..0x1fdc."""
    assert X64.mmapped_requests_for(0x2000) == (0xFE9, 0x1FE8)
    assert I386.mmapped_requests_for(0x1FF8) == (0xFDD, 0x1FDC)
    assert I386.mmapped_requests_for(0x1000 - 8) == (0, 0xFDC)


def test_bin_min_size_of_the_last_bins():
    """largebin_index_64: ((sz >> 18) <= 2) ? 124 + (sz >> 18) : 126, so 125 from 0x40000 and 126
    from 0x80000 on; it never gives 127: no size of the address space goes in bin 127."""
    assert (X64.bin_min_size(125), X64.bin_min_size(126)) == (0x40000, 0x80000)
    assert X64.bin_min_size(127) == 1 << 64
    assert I386.bin_min_size(127) == 1 << 32


def test_without_tcache_keeps_the_struct_name():
    debug = without_tcache(X64)
    assert debug.malloc_par.name == "malloc_par" and debug.malloc_par.size == 0x68  # ends at sbrk_base 0x60
