"""gdb_heap.mappings on `info proc mappings` text as gdb 13 prints it (a live process, with
permissions; a core file, without), every value read off the text by hand."""

from gdb_heap.mappings import Mapping, containing, data_spans, is_libc, libc_path, parse, tcb_spans

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
ANON = "   "  # gdb pads an anonymous mapping's empty objfile column
LIVE = f"""process 4242
Mapped address spaces:

          Start Addr           End Addr       Size     Offset  Perms  objfile
      0x555555554000     0x555555555000     0x1000        0x0  r--p   /work/build/all_bins
      0x555555559000     0x55555557a000    0x21000        0x0  rw-p   [heap]
      0x7ffff7d8a000     0x7ffff7db0000    0x26000        0x0  r--p   {LIBC}
      0x7ffff7f9f000     0x7ffff7fa1000     0x2000   0x1be000  rw-p   {LIBC}
      0x7ffff7fa1000     0x7ffff7fae000     0xd000        0x0  rw-p{ANON}
      0x7ffff7fc3000     0x7ffff7fc4000     0x1000        0x0  ---p{ANON}
      0x7ffff7ffd000     0x7ffff7fff000     0x2000    0x37000  rw-p   /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
      0x7ffffffde000     0x7ffffffff000    0x21000        0x0  rw-p   [stack]
"""
CORE = f"""Mapped address spaces:

          Start Addr           End Addr       Size     Offset objfile
      0x555555554000     0x555555555000     0x1000        0x0 /work/build/all_bins
      0x7ffff7f9f000     0x7ffff7fa1000     0x2000   0x1be000 {LIBC}
"""


def test_parse_a_live_process():
    maps = parse(LIVE)
    assert [(m.start, m.end, m.path, m.readable, m.writable) for m in maps] == [
        (0x555555554000, 0x555555555000, "/work/build/all_bins", True, False),
        (0x555555559000, 0x55555557A000, "[heap]", True, True),
        (0x7FFFF7D8A000, 0x7FFFF7DB0000, LIBC, True, False),
        (0x7FFFF7F9F000, 0x7FFFF7FA1000, LIBC, True, True),
        (0x7FFFF7FA1000, 0x7FFFF7FAE000, "", True, True),
        (0x7FFFF7FC3000, 0x7FFFF7FC4000, "", False, False),
        (0x7FFFF7FFD000, 0x7FFFF7FFF000, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", True, True),
        (0x7FFFFFFDE000, 0x7FFFFFFFF000, "[stack]", True, True),
    ]
    assert [m.anonymous for m in maps] == [False, True, False, False, True, True, False, True]


def test_parse_a_core_file():
    maps = parse(CORE)
    assert [(m.start, m.end, m.path, m.readable, m.writable) for m in maps] == [
        (0x555555554000, 0x555555555000, "/work/build/all_bins", True, None),
        (0x7FFFF7F9F000, 0x7FFFF7FA1000, LIBC, True, None)]


def test_libc_names():
    assert is_libc(LIBC) and is_libc("/lib/i386-linux-gnu/libc-2.26.so")
    assert not is_libc("/usr/lib/libc.so.6.bak") and not is_libc("/usr/lib/libcrypt.so.1")
    assert not is_libc("/x/mylibc.so.6")
    assert libc_path(parse(LIVE)) == LIBC
    assert libc_path([Mapping(0, 0x1000, "[heap]")]) is None


def test_data_spans_writable_and_the_bss_after():
    # libc's rw-p mapping, then the anonymous rw-p one right after it (its .bss)
    assert data_spans(parse(LIVE), LIBC) == [(0x7FFFF7F9F000, 0x7FFFF7FA1000), (0x7FFFF7FA1000, 0x7FFFF7FAE000)]
    # a core: no permissions, every mapping of the file
    assert data_spans(parse(CORE), LIBC) == [(0x7FFFF7F9F000, 0x7FFFF7FA1000)]
    gap = [Mapping(0x1000, 0x2000, LIBC, writable=True), Mapping(0x3000, 0x4000, "", writable=True)]
    assert data_spans(gap, LIBC) == [(0x1000, 0x2000)]  # not adjacent: not its .bss
    ro = [Mapping(0x1000, 0x2000, LIBC, writable=True), Mapping(0x2000, 0x3000, "", writable=False)]
    assert data_spans(ro, LIBC) == [(0x1000, 0x2000)]
    assert data_spans([Mapping(0x1000, 0x2000, LIBC, writable=True)], LIBC) == [(0x1000, 0x2000)]


def test_containing():
    maps = parse(LIVE)
    assert containing(maps, 0x555555559000) is maps[1]
    assert containing(maps, 0x55555557A000 - 1) is maps[1]
    assert containing(maps, 0x55555557A000) is None
    assert containing(maps, 0x555555555000) is None


def test_tcb_spans():
    maps = parse(LIVE)
    heaps = [(0x555555559000, 0x55555557A000)]
    assert tcb_spans(maps, heaps, 0x1000) == [
        (0x7FFFF7FAD000, 0x7FFFF7FAE000), (0x7FFFF7FA1000, 0x7FFFF7FA2000),  # the anonymous rw-p
        (0x7FFFF7FFE000, 0x7FFFF7FFF000), (0x7FFFF7FFD000, 0x7FFFF7FFE000),  # ld.so's data
        (0x7FFFFFFFE000, 0x7FFFFFFFF000), (0x7FFFFFFDE000, 0x7FFFFFFDF000),  # [stack]
    ]
    # [heap] when it is not an arena's heap: its top and its start (a static program's main thread)
    assert tcb_spans(maps[1:2], [], 0x1000) == [(0x555555579000, 0x55555557A000), (0x555555559000, 0x55555555A000)]
    # a mapping no bigger than the edge: once
    assert tcb_spans([Mapping(0x1000, 0x2000, "", writable=True)], [], 0x1000) == [(0x1000, 0x2000)]
    assert tcb_spans([Mapping(0x1000, 0x2000, "/lib/ld.so", writable=True)], [], 0x800) == [
        (0x1800, 0x2000), (0x1000, 0x1800)]
