"""try_free's less common ends (paths.py), against glibc's malloc.c by hand: munmap_chunk's
pointer check (2.36; 2.28 without the in-page offset check; 2.43's mmap_base_offset with its
MMAP_HP flag and the trailing CHUNK_HDR_SZ), systrim after a free that reaches
FASTBIN_CONSOLIDATION_THRESHOLD (trim_threshold, top_pad, whole pages), malloc_consolidate at
that threshold, and tcache_init on a thread's first free (2.26-2.41).

Heaps from tests/synthetic.py (x86_64): sbrk_base 0x555555560000, the tcache's chunk 0x290, so
the first chunk laid out is at 0x555555560290; mp_ as glibc's defaults (trim_threshold, top_pad
and mmap_threshold 128 KiB)."""

from __future__ import annotations

from gdb_heap import paths
from gdb_heap.heap import Heap
from gdb_heap.layouts import Version
from gdb_heap.memory import ImageMemory, Reader
from tests.synthetic import HeapBuilder, Synthetic

FIRST = 0x555555560290
MAPPED = 0x7FFFF7A00000  # a page-aligned mapping of its own, for mmapped chunks


def free(s: Synthetic, mem: int, page: bytes = b"") -> paths.FreeResult:
    memory = ImageMemory(dict(s.memory.regions))
    if page:
        memory.add(MAPPED, bytearray(page))
    heap = Heap(Reader(memory, s.S), s.layout, s.anchors)
    return paths.try_free(heap.reader, paths.context_for(heap), mem)


def mmapped(offset: int, prev_size: int, size_field: int) -> bytes:
    """A page holding an mmapped chunk's header `offset` bytes in."""
    page = bytearray(0x1000)
    page[offset:offset + 8] = prev_size.to_bytes(8, "little")
    page[offset + 8:offset + 16] = size_field.to_bytes(8, "little")
    return bytes(page)


def plain(version: Version = (2, 36)) -> Synthetic:
    b = HeapBuilder(version, 8)
    b.chunk(0x20)
    return b.build()


# -- munmap_chunk ------------------------------------------------------------------------------

def test_munmap_of_a_whole_mapping():
    r = free(plain(), MAPPED + 0x10, mmapped(0, 0, 0x21000 | 2))
    assert r.steps == [f"free({MAPPED + 0x10:#x}): chunk {MAPPED:#x}, size 0x21000",
                       f"an mmapped chunk: munmap of 0x21000 bytes at {MAPPED:#x}"]
    assert (r.to, r.aborts, r.chunk, r.address) == ("munmap", None, MAPPED, MAPPED + 0x10)


def test_munmap_block_and_total_size_must_be_whole_pages():
    # the chunk 0x10 into its mapping: prev_size 0x10 names the block, 0x10 + 0x20ff0 = 0x21000 bytes
    r = free(plain(), MAPPED + 0x20, mmapped(0x10, 0x10, 0x20FF0 | 2))
    assert (r.to, r.aborts) == ("munmap", None)
    assert r.steps[-1] == f"an mmapped chunk: munmap of 0x21000 bytes at {MAPPED:#x}"
    r = free(plain(), MAPPED + 0x20, mmapped(0x10, 0x10, 0x21000 | 2))  # total 0x21010
    assert (r.aborts, r.failed_check, r.to) == ("munmap_chunk(): invalid pointer", "MUNMAP_INVALID_POINTER", None)
    r = free(plain(), MAPPED + 0x20, mmapped(0x10, 0x20, 0x20FE0 | 2))  # block MAPPED - 0x10: not a page start
    assert r.aborts == "munmap_chunk(): invalid pointer"


def test_munmap_user_pointer_offset_must_be_a_power_of_two_from_229():
    """mem & (pagesize - 1) = 0x30 (not a power of two): 2.29+ aborts; 2.28 has no such check.
    0x10 and 0 pass (powerof2 (0) holds)."""
    page = mmapped(0x20, 0x20, 0x20FE0 | 2)
    assert free(plain(), MAPPED + 0x30, page).aborts == "munmap_chunk(): invalid pointer"
    assert free(plain((2, 29)), MAPPED + 0x30, page).aborts == "munmap_chunk(): invalid pointer"
    r = free(plain((2, 28)), MAPPED + 0x30, page)
    assert (r.to, r.aborts) == ("munmap", None)
    page = mmapped(0xFF0, 0xFF0, 0x20010 | 2)  # mem at the next page start: offset 0
    r = free(plain(), MAPPED + 0x1000, page)
    assert (r.to, r.aborts) == ("munmap", None)
    assert r.steps[-1] == f"an mmapped chunk: munmap of 0x21000 bytes at {MAPPED:#x}"


def test_munmap_from_243_adds_the_trailing_header_and_masks_mmap_hp():
    """2.43: mmap_size = mmap_base_offset (prev_size without MMAP_HP) + chunksize + CHUNK_HDR_SZ."""
    r = free(plain((2, 43)), MAPPED + 0x10, mmapped(0, 0, 0x20FF0 | 2))
    assert (r.to, r.aborts) == ("munmap", None)
    assert r.steps[-1] == f"an mmapped chunk: munmap of 0x21000 bytes at {MAPPED:#x}"
    r = free(plain((2, 43)), MAPPED + 0x10, mmapped(0, 1, 0x20FF0 | 2))  # MMAP_HP: a huge page, offset 0
    assert (r.to, r.aborts) == ("munmap", None)
    r = free(plain((2, 43)), MAPPED + 0x10, mmapped(0, 0, 0x21000 | 2))  # 0x21010 bytes: not whole pages
    assert r.aborts == "munmap_chunk(): invalid pointer"


# -- systrim -----------------------------------------------------------------------------------

def trim_heap() -> tuple[Synthetic, int]:
    """A 0x500 chunk freed into top: top becomes it, of 0x500 + 0x30850 = 0x30d50 bytes (the
    builder's top runs from 0x7b0 to the page end 0x31000 past sbrk_base)."""
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x500)
    s = b.build(top_size_min=0x30000)
    assert s.top_size == 0x30850
    return s, a


def set_mp(s: Synthetic, name: str, value: int) -> None:
    s.poke(s.mp + s.layout.malloc_par.offset(name), value)


def test_systrim_releases_whole_pages_above_top_pad():
    """top_size 0x30d50 >= trim_threshold 0x20000: top_area = 0x30d50 - MINSIZE - 1 = 0x30d2f;
    extra = ALIGN_DOWN (0x30d2f - top_pad 0x20000, 0x1000) = 0x10000."""
    s, a = trim_heap()
    r = free(s, a + 0x10)
    assert (r.to, r.top_after, r.trimmed) == ("top", a, 0x10000)
    assert r.side_effects == ["systrim: top 0x30d50 >= trim_threshold 0x20000: sbrk(-0x10000), "
                              "top's size becomes 0x20d50"]
    assert r.steps[-2:] == [f"the next chunk is top: merged into top, which becomes {a:#x} of size 0x30d50",
                            r.side_effects[0]]


def test_systrim_at_trim_threshold_and_one_above():
    s, a = trim_heap()
    set_mp(s, "top_pad", 0)
    set_mp(s, "trim_threshold", 0x30D50)  # top's size itself: trims, extra = ALIGN_DOWN (0x30d2f, 0x1000)
    r = free(s, a + 0x10)
    assert r.trimmed == 0x30000
    assert r.side_effects == ["systrim: top 0x30d50 >= trim_threshold 0x30d50: sbrk(-0x30000), "
                              "top's size becomes 0xd50"]
    set_mp(s, "trim_threshold", 0x30D51)
    r = free(s, a + 0x10)
    assert (r.trimmed, r.side_effects) == (0, [])
    assert r.steps[-1] == "top's size 0x30d50 is below trim_threshold 0x30d51: no trim"


def test_systrim_top_pad_boundaries():
    s, a = trim_heap()
    set_mp(s, "top_pad", 0x30D2F)  # top_area <= pad: nothing
    r = free(s, a + 0x10)
    assert (r.trimmed, r.side_effects, r.steps[-1].startswith("the next chunk is top")) == (0, [], True)
    set_mp(s, "top_pad", 0x30D2E)  # one byte over the pad: ALIGN_DOWN (1, 0x1000) = 0 pages
    r = free(s, a + 0x10)
    assert (r.trimmed, r.side_effects) == (0, [])
    set_mp(s, "top_pad", 0x30D2F - 0xFFF)  # a byte short of a page over the pad: nothing
    assert free(s, a + 0x10).trimmed == 0
    set_mp(s, "top_pad", 0x30D2F - 0x1000)  # a page over the pad: one page
    r = free(s, a + 0x10)
    assert r.trimmed == 0x1000
    w: dict[int, int] = {}
    heap = s.heap()
    paths.try_free(heap.reader, paths.context_for(heap), a + 0x10, w)
    assert w[a + 8] == 0x2FD51  # top's new head: 0x30d50 - 0x1000, PREV_INUSE
    assert r.side_effects == ["systrim: top 0x30d50 >= trim_threshold 0x20000: sbrk(-0x1000), "
                              "top's size becomes 0x2fd50"]


# -- FASTBIN_CONSOLIDATION_THRESHOLD -------------------------------------------------------------

def consolidation_heap(size: int) -> tuple[Synthetic, int, int]:
    """tcache[0] full, a fast chunk, then a chunk of `size` between in-use guards."""
    b = HeapBuilder((2, 36), 8)
    for _ in range(7):
        b.chunk(0x20, "tcache")
        b.chunk(0x30)
    f = b.chunk(0x20, "fast")
    b.chunk(0x30)
    a = b.chunk(size)
    b.chunk(0x30)
    return b.build(), a, f


def test_a_free_of_65536_bytes_consolidates_the_fast_bins():
    s, a, f = consolidation_heap(0x10000)
    r = free(s, a + 0x10)
    assert r.to == "unsorted"
    assert r.side_effects[0] == ("malloc_consolidate: every fast bin's chunks merged with their free neighbours, "
                                 "into the unsorted bin or top")
    assert r.steps[-1] == f"top's size {s.top_size:#x} is below trim_threshold 0x20000: no trim"
    s, a, f = consolidation_heap(0xFFF0)  # one step below the threshold: neither
    r = free(s, a + 0x10)
    assert (r.to, r.side_effects) == ("unsorted", [])
    assert r.steps[-1] == f"chunk {a:#x} of size 0xfff0 goes to unsorted"


def test_no_fast_chunks_no_consolidation():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    a = b.chunk(0x10000)
    b.chunk(0x30)
    s = b.build()
    r = free(s, a + 0x10)
    assert r.side_effects == [] and r.steps[-1].startswith("top's size ")


# -- tcache_init ---------------------------------------------------------------------------------

def test_a_threads_first_free_allocates_its_tcache_first():
    """tcache == NULL (2.26-2.41): MAYBE_INIT_TCACHE mallocs sizeof (tcache_perthread_struct),
    a 0x290 chunk cut from top, zeroes it, and the free goes to its bin 1."""
    b = HeapBuilder((2, 36), 8, tcache=False)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build(top_size_min=0x1000)
    top = s.top
    assert a == 0x555555560000 and top == 0x555555560050
    r = free(s, a + 0x10)
    cut = f"tcache_init: split from top: top becomes {top + 0x290:#x} of size {s.top_size - 0x290:#x}"
    assert r.steps[2:4] == [cut,
                            f"tcache_init: this thread's tcache is allocated at {top + 0x10:#x}"]
    assert (r.to, r.bin_index, r.aborts) == ("tcache[1]", 1, None)
    assert r.side_effects == [f"tcache_init: this thread's tcache is allocated at {top + 0x10:#x}"]


def test_tcache_init_with_a_tcache_count_of_zero():
    """glibc.malloc.tcache_count=0: tcache_init (2.26-2.41) has no test of the count, so the
    struct is still cut from top; then counts[1] < 0 fails and the chunk goes to fast[1]."""
    b = HeapBuilder((2, 36), 8, tcache=False)
    a = b.chunk(0x30)
    b.chunk(0x20)
    s = b.build()
    set_mp(s, "tcache_count", 0)
    r = free(s, a + 0x10)
    assert r.to == "fast[1]"
    assert r.side_effects == [f"tcache_init: this thread's tcache is allocated at {s.top + 0x10:#x}"]
    assert "tcache[1] is full (0 chunks)" in r.steps


def test_tcache_init_that_gets_no_chunk_leaves_the_free_without_a_tcache():
    """top of 0x2a0 < 0x290 + MINSIZE: tcache_init's malloc goes to sysmalloc, an mmap (mmap_threshold
    lowered to 0x200) whose address is not known; the free goes on without a tcache, to fast[1].
    With top 0x2b0 = 0x290 + MINSIZE exactly the chunk is cut from top."""
    for guard, top_size in ((0xD30, 0x2A0), (0xD20, 0x2B0)):
        b = HeapBuilder((2, 36), 8, tcache=False)
        a = b.chunk(0x30)
        b.chunk(guard)
        s = b.build()
        assert s.top_size == top_size
        set_mp(s, "mmap_threshold", 0x200)
        r = free(s, a + 0x10)
        if top_size == 0x2A0:
            assert r.to == "fast[1]"
            assert r.steps[2] == ("tcache_init: sysmalloc: size 0x290 >= mmap_threshold 0x200: a new mapping "
                                  "(the kernel picks its address)")
            assert r.side_effects == []
        else:
            assert r.to == "tcache[1]"
            assert r.side_effects == [f"tcache_init: this thread's tcache is allocated at {s.top + 0x10:#x}"]
