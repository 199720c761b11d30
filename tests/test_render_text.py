"""The text views, line for line, on one small heap laid out by hand (glibc 2.36, x86-64): every
address and size below is worked out here from the layout, not taken from gdb_heap.

    sbrk_base 0x555555560000: the tcache_perthread_struct's chunk, 0x290 bytes (its 0x280 bytes
    + SIZE_SZ, rounded up to 16); then
    0x555555560290  0x20  in use
    0x5555555602b0  0x30  free, tcache[1] (0x30 = tcache bin (0x30 - 0x20) / 16)
    0x5555555602e0  0x20  in use
    0x555555560300  0x500 free, unsorted bin
    0x555555560800  0x20  in use (its PREV_INUSE clear, prev_size 0x500)
    0x555555560820  top: up to the next page, 0x555555561000, so 0x7e0 bytes
"""

from typing import List

from gdb_heap import render
from gdb_heap.heap import MmappedView, ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.mmapped import MmappedChunk
from gdb_heap.model import BinChain, Problem
from gdb_heap.style import Style
from tests.synthetic import HeapBuilder, Synthetic

PLAIN = Style(False)
ARENA = 0x7FFFF7E10C80  # tests/synthetic.py's &main_arena: libc data base + 0xc80


def small_heap() -> Synthetic:
    b = HeapBuilder((2, 36), 8)
    for size, kind in ((0x20, None), (0x30, "tcache"), (0x20, None), (0x500, "unsorted"), (0x20, None)):
        b.chunk(size, kind)
    return b.build()


def test_the_layout_worked_out_above():
    s = small_heap()
    assert [c.address for c in s.chunks] == [0x555555560000, 0x555555560290, 0x5555555602B0, 0x5555555602E0,
                                              0x555555560300, 0x555555560800, 0x555555560820]
    assert (s.top, s.top_size, s.arena) == (0x555555560820, 0x7E0, ARENA)


def test_bins_lines():
    s = small_heap()
    heap = s.heap()
    chains, problems = heap.bins(heap.main_arena)
    lines = list(render.bins_lines(chains, problems, PLAIN, lambda a: None, heap.tcache))
    assert lines == [
        "tcache (tcache_perthread_struct at 0x555555560010)",
        "  tcache[1]  size 0x30  1 chunk",
        "    -> 0x5555555602b0",
        "unsorted bin",
        "  unsorted  sizes >= 0x20  1 chunk",
        "    -> 0x555555560300 (0x500)",
    ]


def test_bins_lines_wrap_at_the_width_and_name_the_owner():
    chains = [BinChain("small", 16, 0x100, 5, [0x1000 * i for i in range(1, 6)], [], [0x100] * 5),
              BinChain("large", 64, 0x400, 2, [0x10000, 0x20000], [], []),
              BinChain("tcache", 70, 0x800, 1, [0x30000], [], [0x800])]
    sizes = {0x10000: 0x440}
    # "    -> 0x1000 -> 0x2000 -> 0x3000 -> 0x4000 ->" is 4 + 4 * 10 + 2 = 46 columns: the fifth wraps
    lines = list(render.bins_lines(chains, [Problem(0x20000, "bad", None)], PLAIN, sizes.get, None,
                                   owner="thread 2 (LWP 99)", width=46))
    assert lines == [
        "small bins",
        "  small[16]  size 0x100  5 chunks",
        "    -> 0x1000 -> 0x2000 -> 0x3000 -> 0x4000 ->",
        "       0x5000",
        "large bins",
        "  large[64]  sizes >= 0x400  2 chunks",
        "    -> 0x10000 (0x440) -> 0x20000 (?)",
        "tcache of thread 2 (LWP 99)",
        "  tcache[70]  sizes >= 0x800  1 chunk",
        "    -> 0x30000",
        "problem at 0x20000: bad",
    ]
    assert list(render.bins_lines([], [], PLAIN, sizes.get, None)) == ["no chunks in these bins"]
    unbounded = list(render.bins_lines(chains[:1], [], PLAIN, sizes.get, None))
    assert unbounded[2] == "    -> 0x1000 -> 0x2000 -> 0x3000 -> 0x4000 -> 0x5000"


def test_arena_and_top_lines():
    s = small_heap()
    heap = s.heap()
    arena = heap.main_arena
    assert list(render.arena_lines(arena, PLAIN)) == [
        f"main arena {ARENA:#x}: top 0x555555560820, system memory 0x1000 (4.0 KiB), next {ARENA:#x}",
        "  heap 0x555555560000-0x555555561000 (4.0 KiB)",
    ]
    threads = [ThreadInfo(1, 4242, True, None, ARENA), ThreadInfo(2, 4243, False, None, ARENA)]
    assert list(render.arena_lines(arena, PLAIN, threads))[1] == (
        "  threads: thread 1 (LWP 4242) *, thread 2 (LWP 4243) (glibc counts 1 attached)")
    assert list(render.arena_lines(arena, PLAIN, []))[1] == "  threads: none attached now (glibc counts 1 attached)"
    assert list(render.top_lines(heap.top(arena), arena, PLAIN)) == [
        f"top chunk 0x555555560820 of main arena {ARENA:#x}",
        "  size 0x7e0 (2.0 KiB), ends at 0x555555561000",  # 2016 / 1024 = 1.97,
        "  heap 0x555555560000-0x555555561000: top starts at +0x820 and ends at the end of its heap",
        "  the next malloc that does not fit in a bin is cut from top; when top is too small the heap grows (sbrk)",
    ]


def test_top_past_and_before_the_heap_end():
    s = small_heap()
    s.poke(s.top + 8, 0x17E0 | 1)  # top claims 0x1000 more than the heap has
    heap = s.heap()
    arena = heap.main_arena
    lines = list(render.top_lines(heap.top(arena), arena, PLAIN))
    assert lines[1] == "  size 0x17e0 (6.0 KiB), ends at 0x555555562000"  # 6112 / 1024 = 5.97
    assert lines[2].endswith("top starts at +0x820 and ends 0x1000 bytes past its heap's end")
    s = small_heap()
    s.poke(s.top + 8, 0x7C0 | 1)
    heap = s.heap()
    lines = list(render.top_lines(heap.top(heap.main_arena), heap.main_arena, PLAIN))
    # The main arena's sbrk heap ends where top ends (model.main_heap): a shorter top ends it sooner
    assert lines[2] == "  heap 0x555555560000-0x555555560fe0: top starts at +0x820 and ends at the end of its heap"


def test_summary_lines():
    counts = {("top", None, 0x7E0): 1, ("free", "unsorted", 0x500): 1, ("in_use", None, 0x20): 3,
              ("free", "tcache", 0x30): 1, ("in_use", None, 0x290): 1}
    assert list(render.summary_lines(counts, PLAIN)) == [
        "state      bin             size      count          bytes",
        "in use     -               0x20          3             96",
        "in use     -              0x290          1            656",
        "free       tcache          0x30          1             48",
        "free       unsorted       0x500          1           1280",
        "top        -              0x7e0          1           2016",
        "total                                    7           4096",
    ]


def test_chunk_lines():
    rows = [(0x555555560290, 0x21, "in_use", None, None), (0x5555555602B0, 0x31, "free", "tcache", 1),
            (0x555555560820, 0x7E1, "top", None, None), (0x5555555602E0, 0x27, "in_use", None, None)]
    data = {0x555555560290: b"hello, world!\x00\x01\xff"}
    lines = list(render.chunk_lines(rows, lambda a: data.get(a, b"\x00" * 16), PLAIN,
                                    notes={0x5555555602B0: "(the tcache entry)"}))
    assert lines == [
        "chunk          user              size flg state           data",
        # the data as words (little-endian): "hello, w" is 0x77202c6f6c6c6568
        "0x555555560290 0x5555555602a0    0x20 P.. in use          0x77202c6f6c6c6568 0xff010021646c726f "
        "hello, world!...",
        "0x5555555602b0 0x5555555602c0    0x30 P.. free tcache[1]  (the tcache entry)",
        "0x555555560820 0x555555560830   0x7e0 P.. top",
        "0x5555555602e0 0x5555555602f0    0x20 PMN in use          0x0000000000000000 0x0000000000000000 "
        "................",
    ]


def test_check_and_problem_lines():
    s = small_heap()
    heap = s.heap()
    from gdb_heap.check import Report

    report = Report(heap.main_arena, [Problem(0x555555560300, "broken", "free(): invalid size")], 6, 1)
    assert list(render.check_lines(report, PLAIN)) == [
        f"main arena {ARENA:#x}: 1 problem (6 chunks walked, 1 chunks in bins checked)",
        'problem at 0x555555560300: broken (glibc would abort: "free(): invalid size")',
    ]
    report = Report(heap.main_arena, [], 6, 1)
    assert list(render.check_lines(report, PLAIN)) == [
        f"main arena {ARENA:#x}: no problems found (6 chunks walked, 1 chunks in bins checked)"]


def test_mmapped_lines():
    c = MmappedChunk(0x7FFFF7DC7000, 0x7FFFF7DC7010, 0, 0x31002, 0x7FFFF7DC7000, 0x7FFFF7DF8000,
                     0x7FFFF7DC7000, 0x7FFFF7DF8000)
    view = MmappedView([c], [Mapping(0x7FFFF0000000, 0x7FFFF0001000, "", False)], "/proc/PID/maps", 2, 0x62000)
    lines: List[str] = list(render.mmapped_lines(view, PLAIN))
    assert lines == [
        "chunk                size  user data      mapping                       slack",
        "0x7ffff7dc7000    0x31000  0x7ffff7dc7010 0x7ffff7dc7000-0x7ffff7df8000 0x0",
        "1 mmapped chunk found (196.0 KiB mapped) in anonymous mappings (/proc/PID/maps); glibc counts 2 "
        "(mp_.n_mmaps), 392.0 KiB (mp_.mmapped_mem)",
        "the scan found 1 (196.0 KiB mapped) but glibc counts 2 (392.0 KiB): damaged headers, or a chunk glibc is "
        "mapping or unmapping right now",
        "mapping 0x7ffff0000000-0x7ffff0001000 is not readable (not in the core file?); its chunks are not shown",
    ]


def test_human():
    assert [render.human(n) for n in (0, 1023, 1024, 1536, 1 << 20, 5 << 30, 1 << 42)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "1.0 MiB", "5.0 GiB", "4096.0 GiB"]


def test_overview_lines_and_doc():
    """`heap` on the heap above: 4 chunks in use (the tcache struct's, 0x290, 0x2e0, 0x800), one in
    tcache[1], one unsorted; one thread, selected."""
    from gdb_heap import views

    s = small_heap()
    heap = s.heap()
    arena = heap.main_arena
    ov = views.overview(heap)
    me = ThreadInfo(1, 4242, True, 0x555555560010, None)
    lines = list(render.overview_lines("2.36", "debug symbols", ARENA, 0x7FFFF7E10000, ["a note"], [(arena, [me])],
                                       ov, PLAIN))
    assert lines == [
        f"glibc 2.36, allocator state found by debug symbols (main_arena {ARENA:#x}, mp_ 0x7ffff7e10000)",
        "  a note",
        f"main arena {ARENA:#x}: top 0x555555560820, system memory 0x1000 (4.0 KiB), next {ARENA:#x}",
        "  threads: thread 1 (LWP 4242) * (glibc counts 1 attached)",
        "  heap 0x555555560000-0x555555561000 (4.0 KiB)",
        "chunks: 4 in use; free: 1 tcache, 0 fast, 1 unsorted, 0 small, 0 large (plus one top chunk per arena)",
    ]
    assert list(render.overview_lines(None, "a scan", ARENA, 0x10, [], [], ov, PLAIN)) == [
        f"glibc version unknown, allocator state found by a scan (main_arena {ARENA:#x}, mp_ 0x10)",
        "the heap is not initialised yet: the program has not called malloc (no heap, no chunks); continue past "
        "its first malloc"]
    doc = render.overview_doc("2.36", "debug symbols", [(arena, [me])], ov)
    assert doc == {"glibc": "2.36", "located_by": "debug symbols", "arenas": [render.arena_doc(arena, [me])],
                   "counts": {"in_use": 4, "tcache": 1, "fast": 0, "unsorted": 1, "small": 0, "large": 0},
                   "in_progress": []}
    assert render.arena_doc(arena, [me])["threads"] == [{"thread": 1, "lwp": 4242}]
    assert render.arena_heading(arena, PLAIN) == f"main arena {ARENA:#x}"
