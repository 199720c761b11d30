"""Which colour role each piece of text gets (a style that writes the role's name around the text
instead of escape codes), and the JSON documents' fields, for the heap of tests/test_render_text.py."""

from dataclasses import replace
from typing import Any, Dict, Tuple

from gdb_heap import render, views
from gdb_heap.check import Report
from gdb_heap.heap import MmappedView, ThreadInfo, Where
from gdb_heap.mmapped import MmappedChunk, mmapped_span
from gdb_heap.model import Arena, BinChain, Chunk, HeapRegion, Problem
from gdb_heap.style import Style
from tests.synthetic import TCACHE_KEY
from tests.test_render_text import ARENA, small_heap


class Roles(Style):
    """<role>text</role> for every role, whatever Pygments is there."""

    def __init__(self) -> None:
        super().__init__(False)

    def codes(self, role: str) -> Tuple[str, str]:
        return f"<{role}>", f"</{role}>"

    def __call__(self, role: str, text: str) -> str:
        return f"<{role}>{text}</{role}>" if text else text


R = Roles()


def test_chunk_lines_roles():
    rows = [(0x555555560290, 0x21, "in_use", None, None), (0x5555555602B0, 0x31, "free", "tcache", 1),
            (0x555555560820, 0x7E1, "top", None, None)]
    lines = list(render.chunk_lines(rows, lambda a: b"A" * 16, R))
    assert lines == [
        "<heading>chunk          user              size flg state           data</heading>",
        "<address>0x555555560290</address> 0x5555555602a0 <size>   0x20</size> P.. <in_use>in use         </in_use> "
        "<dim>0x4141414141414141 0x4141414141414141 AAAAAAAAAAAAAAAA</dim>",
        "<address>0x5555555602b0</address> 0x5555555602c0 <size>   0x30</size> P.. <free>free tcache[1] </free> "
        "<dim>0x4141414141414141 0x4141414141414141 AAAAAAAAAAAAAAAA</dim>",
        "<address>0x555555560820</address> 0x555555560830 <size>  0x7e0</size> P.. <top>top            </top>",
    ]


def test_bins_lines_roles():
    chains = [BinChain("fast", 0, 0x20, 1, [0x1000], [], [0x20]),
              BinChain("unsorted", 1, 0x20, 1, [0x2000], [], [0x500])]
    lines = list(render.bins_lines(chains, [Problem(0x2000, "bad", "free(): invalid size")], R, lambda a: None, None))
    assert lines == [
        "<heading>fastbins</heading>",
        "  <name>fast[0]</name>  <size>size 0x20</size>  1 chunk",
        "    -> <address>0x1000</address>",
        "<heading>unsorted bin</heading>",
        "  <name>unsorted</name>  <size>sizes >= 0x20</size>  1 chunk",
        "    -> <address>0x2000</address> (0x500)",
        '<problem>problem at 0x2000: bad (glibc would abort: "free(): invalid size")</problem>',
    ]


def test_tcache_bin_64_is_the_first_large_one():
    chains = [BinChain("tcache", 63, 0x410, 1, [0x1000], [], [0x410]),
              BinChain("tcache", 64, 0x420, 1, [0x2000], [], [0x420])]
    lines = list(render.bins_lines(chains, [], Style(False), lambda a: None, None))
    assert lines[1] == "  tcache[63]  size 0x410  1 chunk"
    assert lines[3] == "  tcache[64]  sizes >= 0x420  1 chunk"


def test_summary_lines_roles_and_order():
    counts = {("top", None, 0x7E0): 1, ("free", "large", 0x500): 1, ("free", "small", 0x100): 1,
              ("free", "unsorted", 0x600): 1, ("free", "fast", 0x20): 1, ("free", "tcache", 0x30): 1,
              ("in_use", None, 0x20): 1}
    lines = list(render.summary_lines(counts, R))
    assert lines[0] == ("<heading>state      bin             size      count          bytes</heading>")
    assert lines[1] == "<in_use>in use    </in_use> -         <size>      0x20</size>          1             32"
    assert [line.split()[2] for line in lines[2:7]] == ["tcache", "fast", "unsorted", "small", "large"]
    assert lines[2].startswith("<free>free      </free> tcache")
    assert lines[7].startswith("<top>top       </top> -")
    # 2016 + 1280 + 256 + 1536 + 32 + 48 + 32 bytes
    assert lines[8] == "<heading>total                                    7           5200</heading>"
    doc: Any = render.summary_doc(ARENA, counts)
    assert [(r["state"], r["bin"]) for r in doc["summary"]] == [
        ("in_use", None), ("free", "tcache"), ("free", "fast"), ("free", "unsorted"), ("free", "small"),
        ("free", "large"), ("top", None)]


def test_arena_top_check_lines_roles():
    s = small_heap()
    heap = s.heap()
    arena = heap.main_arena
    assert list(render.arena_lines(arena, R)) == [
        f"<heading>main arena</heading> <address>{ARENA:#x}</address>: top <address>0x555555560820</address>, "
        f"system memory 0x1000 (4.0 KiB), next {ARENA:#x}",
        "  heap <address>0x555555560000</address>-<address>0x555555561000</address> (4.0 KiB)",
    ]
    top = list(render.top_lines(heap.top(arena), arena, R))
    assert top[0] == f"top chunk <address>0x555555560820</address> of main arena {ARENA:#x}"
    assert top[1] == "  size <size>0x7e0</size> (2.0 KiB), ends at 0x555555561000"
    report = Report(arena, [Problem(0x10, "x", None)], 6, 1)
    assert list(render.check_lines(report, R)) == [
        f"<heading>main arena</heading> <address>{ARENA:#x}</address>: 1 problem (6 chunks walked, 1 chunks in "
        "bins checked)", "<problem>problem at 0x10: x</problem>"]


def test_thread_arena_lines_and_docs():
    s = small_heap()
    heap = s.heap()
    main = heap.main_arena
    region = HeapRegion(0x7FFFF0000000, 0x7FFFF0021000, 0x7FFFF0000020, heap_info=0x7FFFF0000000,
                        info_size=0x21000, mprotect_size=0x21000)
    state = replace(main.state, address=0x7FFFF0000020)
    arena = Arena(state, False, [region])
    lines = list(render.arena_lines(arena, R))
    assert lines[0].startswith("<heading>arena</heading> <address>0x7ffff0000020</address>")
    assert lines[1] == ("  heap <address>0x7ffff0000000</address>-<address>0x7ffff0021000</address> (132.0 KiB): "
                        "heap_info at 0x7ffff0000000, size 0x21000, mprotect_size 0x21000")
    empty = Arena(state, False, [], [Problem(0x7FFFF0000020, "odd", None)])
    assert list(render.arena_lines(empty, R))[1:] == ["  no heap yet (the arena has not allocated anything)",
                                                      "<problem>problem at 0x7ffff0000020: odd</problem>"]
    assert render.heap_doc(region) == {"start": 0x7FFFF0000000, "end": 0x7FFFF0021000, "heap_info": 0x7FFFF0000000,
                                       "size": 0x21000, "mprotect_size": 0x21000}
    t = ThreadInfo(2, 4243, False, None, arena.address)
    doc = render.arena_doc(arena, [t])
    assert doc == {"address": 0x7FFFF0000020, "main": False, "top": 0x555555560820, "system_mem": 0x1000,
                   "next": ARENA, "max_system_mem": 0x1000, "attached_threads": 1, "flags": 0,
                   "heaps": [render.heap_doc(region)], "threads": [{"thread": 2, "lwp": 4243}]}
    assert "threads" not in render.arena_doc(arena)
    chains = [BinChain("tcache", 0, 0x20, 1, [0x1000], [], [0x20]), BinChain("fast", 0, 0x20, 1, [0x2000], [], [0x20])]
    assert render.bins_doc(ARENA, chains, [], t)["bins"] == [
        {"kind": "tcache", "index": 0, "size": 0x20, "count": 1, "chunks": [0x1000], "thread": 2, "lwp": 4243},
        {"kind": "fast", "index": 0, "size": 0x20, "count": 1, "chunks": [0x2000]}]
    assert render.bins_doc(ARENA, chains[:1], [])["bins"][0] == {"kind": "tcache", "index": 0, "size": 0x20,
                                                                 "count": 1, "chunks": [0x1000]}


def test_mmapped_lines_roles():
    c = MmappedChunk(0x7FFFF7DC7000, 0x7FFFF7DC7010, 0, 0x31002, 0x7FFFF7DC7000, 0x7FFFF7DF8000,
                     0x7FFFF7DC7000, 0x7FFFF7DF8000)
    lines = list(render.mmapped_lines(MmappedView([c], [], "core", 1, 0x31000), R))
    assert lines[0].startswith("<heading>chunk ") and lines[0].endswith("slack</heading>")
    assert lines[1].startswith("<address>0x7ffff7dc7000</address> <size>   0x31000</size>  0x7ffff7dc7010")
    assert lines[2] == ("1 mmapped chunk found (196.0 KiB mapped) in anonymous mappings (core); glibc counts 1 "
                        "(mp_.n_mmaps), 196.0 KiB (mp_.mmapped_mem)")
    assert len(lines) == 3


def test_chunk_detail_roles_and_states():
    s = small_heap()
    heap = s.heap()
    tc = views.chunk_view(heap, 0x5555555602B0)
    lines = list(render.chunk_detail_lines(tc, s.layout, R))
    assert lines == [
        "<heading>chunk</heading> <address>0x5555555602b0</address>  (0x5555555602b0 understood as a chunk address)",
        f"  arena         {ARENA:#x} (main arena)",
        "  prev_size     0x0: not in use (the previous chunk is in use; these bytes end its data)",
        "  size          <size>0x30</size> (48 bytes; field 0x31 = 0x30 | PREV_INUSE)",
        "  state         <free>free tcache[1]</free>",
        "                (glibc still counts it as in use: the next chunk keeps PREV_INUSE set)",
        "  user data     0x5555555602c0, 40 usable bytes",
        f"  first words   0x0000000555555560 {TCACHE_KEY:#018x} `UUU........4.ZZ",
        "  requests      malloc(25) to malloc(40) give a chunk of this size (request + 8 rounded up to 16, at "
        "least 32)",
        # the last entry's next: PROTECT_PTR(&e->next, NULL) = 0x5555555602c0 >> 12
        "  tcache next   0x555555560 stored, 0x0 revealed: end of list",
        f"  tcache key    {TCACHE_KEY:#x}: tcache_key: marks the chunk as in a tcache",
        "  previous      0x555555560290 (size 0x20, in use)",
        "  next          0x5555555602e0 (size 0x20, in use)",
    ]
    un = views.chunk_view(heap, 0x555555560310)
    lines = list(render.chunk_detail_lines(un, s.layout, Style(False)))
    assert lines[0] == "chunk 0x555555560300  (0x555555560310 understood as the user pointer malloc returned)"
    assert lines[3] == "  size          0x500 (1280 bytes; field 0x501 = 0x500 | PREV_INUSE)"
    assert lines[4] == "  state         free unsorted"
    assert lines[5] == "  user data     0x555555560310, 1272 usable bytes"
    # a lone unsorted chunk links both ways to bin_at(1): &bins[0] - 16 = the arena + 0x70 - 0x10
    assert [ln for ln in lines if ln.startswith(("  fd ", "  bk "))] == [
        f"  fd            {ARENA + 0x60:#x}", f"  bk            {ARENA + 0x60:#x}"]
    after = views.chunk_view(heap, 0x555555560800)
    lines = list(render.chunk_detail_lines(after, s.layout, Style(False)))
    assert lines[2] == "  prev_size     0x500: the size of the free chunk before it"
    assert lines[3] == "  size          0x20 (32 bytes; field 0x20 = 0x20 | 0)"
    assert lines[-2:] == ["  previous      0x555555560300 (size 0x500, free unsorted)",
                          "  next          0x555555560820 (size 0x7e0, top)"]
    top = views.chunk_view(heap, s.top)
    lines = list(render.chunk_detail_lines(top, s.layout, R))
    assert "  state         <top>top</top>" in lines
    assert "                (the top chunk: new chunks are cut from its start; no malloc returned it)" in lines
    assert not any(line.startswith("  requests") for line in lines)


def test_mmapped_chunk_detail_with_slack():
    """posix_memalign on an mmapped chunk: prev_size is the slack; the request arithmetic does not apply."""
    c = Chunk(0x7FFFF7DD1000, 0x30002, "in_use", None, None, 8, 0xA000)
    layout = small_heap().layout
    where = Where(c.user_address, c.address, c.size_field, 16, None, "mmapped")
    view = views.ChunkView(where, c, layout.mmapped_requests_for(c.size))
    view.mapping = (c.address - 0xA000, c.address - 0xA000 + mmapped_span(layout, 0xA000, c.size))
    lines = list(render.chunk_detail_lines(view, layout, Style(False)))
    assert lines[1] == "  arena         none: an mmapped chunk, a mapping of its own that no arena or bin holds"
    assert lines[2] == "  prev_size     0xa000: the alignment slack before the chunk in its mapping"
    assert any(line.startswith("  mapping       0x7ffff7dc7000-0x7ffff7e01000 (232.0 KiB)") for line in lines)
    assert not any(line.startswith("  requests") for line in lines)


def test_chunk_view_doc():
    """`heap chunk --json` on the heap of tests/test_render_text.py, every value by hand."""
    s = small_heap()
    heap = s.heap()
    common: Dict[str, Any] = {
        "is_mmapped": False, "non_main_arena": False, "prev_inuse": True, "prev_size": 0, "arena": ARENA,
              "location": None, "notes": [], "problems": [], "reached_by_walk": True, "fd_nextsize": None,
              "bk_nextsize": None, "understood_as": "user_pointer"}
    in_use = {"bin": None, "bin_index": None, "size": 0x20, "state": "in_use"}
    tc = render.chunk_view_doc(views.chunk_view(heap, 0x5555555602C0))
    assert tc == dict(common, address=0x5555555602B0, user_address=0x5555555602C0, size=0x30, usable_size=40,
                      state="free", bin="tcache", bin_index=1, requests=[25, 40], fd=None, fd_stored=None, bk=None,
                      tcache_next={"stored": 0x555555560, "revealed": 0}, tcache_key=TCACHE_KEY,
                      pointers={"next": None, "key": None}, first_words=[0x555555560, TCACHE_KEY],
                      prev_chunk=dict(in_use, address=0x555555560290), next_chunk=dict(in_use, address=0x5555555602E0))
    bin1 = ARENA + 0x60  # bin_at(1): &bins[0] - 2 * SIZE_SZ
    un = render.chunk_view_doc(views.chunk_view(heap, 0x555555560318), lambda a: "unsorted bin" if a == bin1 else "")
    assert un == dict(common, address=0x555555560300, user_address=0x555555560310, size=0x500, usable_size=1272,
                      state="free", bin="unsorted", bin_index=1, requests=[1257, 1272], fd=bin1, fd_stored=bin1,
                      bk=bin1, tcache_next=None, tcache_key=None, pointers={"fd": "unsorted bin", "bk": "unsorted bin"},
                      first_words=[bin1, bin1], inside={"address": 0x555555560318, "offset": 0x18, "user_offset": 8},
                      prev_chunk=dict(in_use, address=0x5555555602E0), next_chunk=dict(in_use, address=0x555555560800))
    header = render.chunk_view_doc(views.chunk_view(heap, 0x555555560800))
    assert (header["understood_as"], header["prev_inuse"], header["prev_size"], "inside" in header) == (
        "chunk", False, 0x500, False)


def test_fast_chunk_doc_keeps_the_stored_fd():
    from tests.test_check_exact import FAST, heap as exact_heap

    s = exact_heap()
    doc = render.chunk_view_doc(views.chunk_view(s.heap(), FAST + 16))
    # PROTECT_PTR(&fd, NULL): the field's address >> 12; glibc follows the revealed 0
    assert (doc["bin"], doc["fd"], doc["fd_stored"], doc["tcache_next"]) == ("fast", 0, (FAST + 16) >> 12, None)


def test_dump_lines_and_their_width():
    """heap chunk --dump of the tcache chunk 0x5555555602b0: two words a line from its header,
    the ASCII, the field names; a line past the width drops its ASCII first, then the names."""
    s = small_heap()
    heap = s.heap()
    view = views.chunk_view(heap, 0x5555555602B0)
    data = heap.reader.read(0x5555555602B0, 0x30)
    head = "chunk 0x5555555602b0, 0x30 of its 0x30 bytes"
    key = f"{TCACHE_KEY:#018x}"
    rows = [("+0x0 ", "0x0000000000000000 0x0000000000000031", "........1.......", "prev_size size"),
            ("+0x10", f"0x0000000555555560 {key}", "`UUU........4.ZZ", "next key"),
            ("+0x20", "0x4141414141414141 0x4141414141414141", "AAAAAAAAAAAAAAAA", "")]

    def dump(width):
        return list(render.dump_lines(view.chunk, data, view.links, Style(False), width=width))

    full = [f"{o} {w} {a}" + (f"  {n}" if n else "") for o, w, a, n in rows]
    assert dump(None) == [head] + full
    assert len(full[2]) == 60 and dump(60) == [head, f"{rows[0][0]} {rows[0][1]}  prev_size size",
                                               f"{rows[1][0]} {rows[1][1]}  next key", full[2]]
    assert dump(59)[3] == f"{rows[2][0]} {rows[2][1]}"
    assert dump(40) == [head] + [f"{o} {w}" for o, w, _, _ in rows]
