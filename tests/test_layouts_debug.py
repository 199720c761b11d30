"""layouts.without_tcache: libc_malloc_debug.so's malloc (USE_TCACHE=0), whose malloc_par ends at
sbrk_base.  glibc 2.36's struct malloc_par on x86-64, by hand: trim_threshold 0, top_pad 8,
mmap_threshold 0x10, arena_test 0x18, arena_max 0x20, thp_pagesize 0x28, hp_pagesize 0x30,
hp_flags 0x38 (int), n_mmaps 0x3c, n_mmaps_max 0x40, max_n_mmaps 0x44, no_dyn_threshold 0x48,
mmapped_mem 0x50, max_mmapped_mem 0x58, sbrk_base 0x60, then (with the tcache) tcache_bins
0x68 .. tcache_unsorted_limit 0x80: 0x88 bytes with, 0x68 without."""

from gdb_heap.layouts import layout_for, without_tcache


def test_without_tcache():
    full = layout_for((2, 36), 8)
    debug = without_tcache(full)
    assert (full.features.tcache, debug.features.tcache) == (True, False)
    assert (full.malloc_par.size, debug.malloc_par.size) == (0x88, 0x68)
    assert debug.malloc_par.offset("sbrk_base") == 0x60 and debug.malloc_par.offset("mmapped_mem") == 0x50
    assert full.malloc_par.has("tcache_count") and not debug.malloc_par.has("tcache_count")
    assert not debug.malloc_par.has("tcache_bins")
    assert debug.malloc_state == full.malloc_state and debug.version == full.version  # all else the same
    i386 = without_tcache(layout_for((2, 36), 4))
    assert (i386.features.tcache, i386.malloc_par.has("tcache_bins")) == (False, False)
    assert without_tcache(layout_for((2, 27), 8)).features.fastbins is True


def test_mmapped_requests_on_i386_and_the_first_page():
    """sysmalloc maps ALIGN_UP(nb + SIZE_SZ, pagesize) where MALLOC_ALIGNMENT == CHUNK_HDR_SZ
    (x86-64), ALIGN_UP(nb + MALLOC_ALIGNMENT - 1, pagesize) where it is larger (i386: 16 > 8);
    nb = request2size(n) = (n + SIZE_SZ + 15) & ~15, at least MINSIZE.
    i386, 0x2000: nb + 15 in 0x1001..0x2000: nb 0x1000..0x1ff0: n 4077..8172.
    x86-64, 0x1000: nb + 8 <= 0x1000 for every n up to 0xff0 - 8 = 4072, from 0."""
    assert layout_for((2, 36), 4).mmapped_requests_for(0x2000) == (4077, 8172)
    assert layout_for((2, 36), 8).mmapped_requests_for(0x1000) == (0, 4072)
    assert layout_for((2, 36), 8).mmapped_requests_for(0x4000, 0x4000) == (0, 0x4000 - 16 - 8)
