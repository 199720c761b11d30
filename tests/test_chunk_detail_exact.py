"""heap chunk's text and JSON, exact, for a thread arena's chunk and an mmapped chunk.

Thread arena (tests/test_thread_arena.py): the chunk at H + 0x8d0, size field 0x35 (0x30 |
NON_MAIN_ARENA | PREV_INUSE), 0x30 - 8 = 40 usable bytes; malloc(n) gives 0x30 for n + 8 rounded
up to 16 being 0x30: n = 25..40; the next chunk H + 0x900 is 0x30, in use.
mmapped (tests/test_where_mmapped.py): size 0x2000, usable 0x2000 - 16 = 8176; sysmalloc maps
ALIGN_UP(request2size(n) + 8, 4096): 0x2000 for request2size(n) in 0x1000..0x1ff0, n = 4073..8168."""

from __future__ import annotations

from gdb_heap import render, views
from gdb_heap.pointers import Namer
from gdb_heap.style import Style
from tests.test_thread_arena import ARENA_T, H, with_thread_arena
from tests.test_where_mmapped import M, with_mmapped

ZEROS = "0x0000000000000000 0x0000000000000000 ................"


def detail(heap, layout, address):
    view = views.chunk_view(heap, address)
    return view, list(render.chunk_detail_lines(view, layout, Style(False), Namer(heap).name, 80))


def test_a_thread_arenas_chunk():
    s, heap = with_thread_arena()
    c = H + 0x8D0
    view, lines = detail(heap, s.layout, c + 0x10)
    assert lines == [
        f"chunk {c:#x}  ({c + 0x10:#x} understood as the user pointer malloc",
        "    returned)",
        f"  arena         {ARENA_T:#x} (thread arena)",
        "  prev_size     0x0: not in use (the previous chunk is in use; these bytes end",
        "      its data)",
        "  size          0x30 (48 bytes; field 0x35 = 0x30 | PREV_INUSE | NON_MAIN_ARENA)",
        "  state         in use",
        f"  user data     {c + 0x10:#x}, 40 usable bytes",
        f"  first words   {ZEROS}",
        "  requests      malloc(25) to malloc(40) give a chunk of this size (request + 8",
        "      rounded up to 16, at least 32)",
        f"  next          {c + 0x30:#x} (size 0x30, in use)"]
    doc = render.chunk_view_doc(view)
    expected = {"address": c, "size": 0x30, "prev_inuse": True, "is_mmapped": False, "non_main_arena": True,
                "state": "in_use", "bin": None, "bin_index": None, "user_address": c + 0x10, "usable_size": 40,
                "understood_as": "user_pointer", "arena": ARENA_T, "requests": [25, 40], "prev_size": 0,
                "first_words": [0, 0], "prev_chunk": None,
                "next_chunk": {"address": c + 0x30, "size": 0x30, "state": "in_use", "bin": None, "bin_index": None},
                "reached_by_walk": True, "notes": [], "problems": []}
    assert {k: doc[k] for k in expected} == expected


def test_an_mmapped_chunk():
    s = with_mmapped()
    heap = s.heap()
    view, lines = detail(heap, s.layout, M + 0x10)
    assert lines == [
        f"chunk {M:#x}  ({M + 0x10:#x} understood as the user pointer malloc",
        "    returned)",
        "  arena         none: an mmapped chunk, a mapping of its own that no arena or",
        "      bin holds",
        "  prev_size     0x0: the alignment slack before the chunk in its mapping",
        "  size          0x2000 (8192 bytes; field 0x2002 = 0x2000 | IS_MMAPPED)",
        "  state         in use",
        f"  user data     {M + 0x10:#x}, 8176 usable bytes",
        f"  first words   {ZEROS}",
        f"  mapping       {M:#x}-{M + 0x2000:#x} (8.0 KiB), its own mmap: glibc",
        "      munmaps it on free (IS_MMAPPED); usable = size - 16",
        "  requests      malloc(4073) to malloc(8168) give a mapping of this size when",
        "      malloc serves them by mmap (request2size + 8, page-rounded)"]
    doc = render.chunk_view_doc(view)
    expected = {"address": M, "size": 0x2000, "is_mmapped": True, "non_main_arena": False, "arena": None,
                "usable_size": 8176, "requests": [4073, 8168], "prev_size": 0}
    assert {k: doc[k] for k in expected} == expected


def test_heap_top_with_a_forced_size():
    """top's size smashed to 0x7ffffffffffffff0 (house of force): it ends at top + size, past the
    heap's end by (top + size) - heap_end; glibc 2.29+ aborts in use_top (size > system_mem)."""
    from tests.test_views import one_of_each
    s, _ = one_of_each()
    s.poke(s.top + 8, 0x7FFFFFFFFFFFFFF1)
    heap = s.heap()
    lines = list(render.top_view_lines(views.top_view(heap, heap.main_arena), heap.main_arena, Style(False)))
    end = s.top + 0x7FFFFFFFFFFFFFF0
    assert lines == [
        f"top chunk {s.top:#x} of main arena {s.arena:#x}",
        f"  size 0x7ffffffffffffff0 (8589934592.0 GiB), ends at {end:#x}",
        f"  heap {s.sbrk_base:#x}-{s.heap_end:#x}: top starts at +{s.top - s.sbrk_base:#x} and ends "
        f"{end - s.heap_end:#x} bytes past its heap's end",
        "  the next malloc that does not fit in a bin is cut from top; when top is too small the heap grows (sbrk)",
        f"problem at {s.top:#x}: top chunk {s.top:#x} has size 0x7ffffffffffffff0, more than the arena's system_mem "
        f"{s.heap_end - s.sbrk_base:#x} (house of force?) (glibc would abort: \"malloc(): corrupted top size\")"]


def test_a_thread_arenas_top():
    s, heap = with_thread_arena()
    arena = heap.arenas[1] if heap.arenas[0].main else heap.arenas[0]
    lines = list(render.top_view_lines(views.top_view(heap, arena), arena, Style(False)))
    assert lines == [
        f"top chunk {H + 0x930:#x} of arena {ARENA_T:#x}",
        "  size 0x206d0 (129.7 KiB), ends at 0x7ffff0021000",
        f"  heap {H:#x}-{H + 0x21000:#x}: top starts at +0x930 and ends at the end of its heap",
        "  the next malloc that does not fit in a bin is cut from top; when top is too small the heap grows "
        "(heap_info / mprotect)"]


def test_heap_check_headlines():
    from gdb_heap.check import Report, check_arena
    from gdb_heap.model import Problem
    from tests.synthetic import uninitialised_image
    s, heap = with_thread_arena()
    thread = heap.arenas[1] if heap.arenas[0].main else heap.arenas[0]
    two = Report(thread, [Problem(H + 0x8D0, "one"), Problem(H + 0x900, "two")], 3, 0)
    assert list(render.check_lines(two, Style(False))) == [
        f"arena {ARENA_T:#x}: 2 problems (3 chunks walked, 0 chunks in bins checked)",
        f"problem at {H + 0x8D0:#x}: one", f"problem at {H + 0x900:#x}: two"]
    u = uninitialised_image()
    uheap = u.heap()
    report = check_arena(uheap, uheap.main_arena)
    assert list(render.check_lines(report, Style(False))) == [
        f"main arena {u.arena:#x}: no heap yet (the arena has not allocated anything): nothing to check "
        "(0 chunks walked, 0 chunks in bins checked)"]
    # problems in an arena with no heap are still counted
    odd = Report(uheap.main_arena, [Problem(0x10, "odd")], 0, 0)
    assert list(render.check_lines(odd, Style(False)))[0] == (
        f"main arena {u.arena:#x}: 1 problem (0 chunks walked, 0 chunks in bins checked)")


def test_a_forged_fast_chunk_in_libcs_data():
    """tests/test_chunk_where.py's forged chunk FAKE (0x20, fd NULL safe-linked: (FAKE + 16) >> 12),
    which fastbinsY[0] lists, inside libc's data mapping."""
    from dataclasses import replace
    from gdb_heap.heap import Heap
    from gdb_heap.mappings import Mapping
    from tests.test_check_exact import FAKE
    from tests.test_chunk_where import forged_fast_head
    s = forged_fast_head()
    libc = Mapping(s.libc_base, s.libc_base + len(s.libc_bytes), "/usr/lib/libc.so.6")
    heap = Heap(s.reader(), s.layout, replace(s.anchors, mappings=lambda: ([libc], "test")))
    view, lines = detail(heap, s.layout, FAKE + 16)
    stored = (FAKE + 16) >> 12
    where = f"a mapping of /usr/lib/libc.so.6 ({libc.start:#x}-{libc.end:#x})"
    assert lines[2:4] == ["  note          outside every heap: in a mapping of /usr/lib/libc.so.6",
                          f"      ({libc.start:#x}-{libc.end:#x})"]
    assert f"  fd            {stored:#x} stored, 0x0 revealed: end of list" in lines
    assert lines[-2:] == [f"problem at {FAKE:#x}: fast[0] lists chunk {FAKE:#x}, which lies",
                          "    outside every heap (a forged chunk)"]
    doc = render.chunk_view_doc(view)
    assert {k: doc[k] for k in ("location", "problems", "fd", "fd_stored", "tcache_next", "notes", "arena")} == {
        "location": {"mapping": "/usr/lib/libc.so.6", "start": libc.start, "end": libc.end, "symbol": None},
        "problems": [{"address": FAKE, "message": f"fast[0] lists chunk {FAKE:#x}, which lies outside every heap "
                                                  "(a forged chunk)"}],
        "fd": 0, "fd_stored": stored, "tcache_next": None, "notes": [f"outside every heap: in {where}"],
        "arena": None}
    coloured = list(render.chunk_detail_lines(view, s.layout, Style(True), Namer(heap).name, 80))
    assert coloured[2].startswith("  " + Style(True)("problem", "note") + "          outside")


def test_tcache_and_mmapped_docs():
    from tests.test_views import one_of_each
    s, c = one_of_each()
    heap = s.heap()
    doc = render.chunk_view_doc(views.chunk_view(heap, c["tcache"]))
    key = 0x5A5A1234C3C3F00D  # tests/synthetic.py's stand-in tcache_key
    assert {k: doc[k] for k in ("tcache_next", "tcache_key", "fd", "bk", "state", "bin", "bin_index")} == {
        "tcache_next": {"stored": (c["tcache"] + 0x10) >> 12, "revealed": 0}, "tcache_key": key, "fd": None,
        "bk": None, "state": "free", "bin": "tcache", "bin_index": 1}
    m = with_mmapped()
    doc = render.chunk_view_doc(views.chunk_view(m.heap(), M + 16))
    assert {k: doc[k] for k in ("prev_size", "mapping_start", "mapping_end")} == {
        "prev_size": 0, "mapping_start": M, "mapping_end": M + 0x2000}
