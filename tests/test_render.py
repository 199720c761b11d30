"""render.py: JSON shapes of the command contract and the text views, on synthetic heaps."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import pytest

from gdb_heap import model, render, views
from gdb_heap.model import Problem
from gdb_heap.style import Style
from tests.synthetic import every_bin_heap

ESC = "\x1b"

CHUNK_KEYS: Dict[str, Any] = {
    "address": int, "size": int, "prev_inuse": bool, "is_mmapped": bool, "non_main_arena": bool, "state": str,
    "bin": (str, type(None)), "bin_index": (int, type(None)), "user_address": int, "usable_size": int}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_chunk_obj(doc, size_sz):
    assert set(doc) == set(CHUNK_KEYS)
    for key, types in CHUNK_KEYS.items():
        assert isinstance(doc[key], types), key
        if types is int:
            assert is_int(doc[key]), key
    assert doc["state"] in ("in_use", "free", "top")
    assert doc["bin"] in (None, "tcache", "fast", "unsorted", "small", "large")
    assert doc["user_address"] == doc["address"] + 2 * size_sz
    if doc["state"] != "free":
        assert doc["bin"] is None and doc["bin_index"] is None
    else:
        assert doc["bin"] is not None and is_int(doc["bin_index"])


@pytest.fixture(params=[((2, 36), 8), ((2, 36), 4)], ids=["x86_64", "i386"])
def heap_and_s(request):
    _, s = every_bin_heap(*request.param)
    return s.heap(), s


def rows(heap, s):
    arena = heap.main_arena
    free = heap.free_index(arena)
    problems: List[Problem] = []
    out = []
    for address, sizef in heap.chunks(arena, problems):
        state, kind, index = model.classify(address, arena.state.top, free)
        out.append((address, sizef, state, kind, index))
    return out, problems


# -- JSON --------------------------------------------------------------------------------------------

def test_chunk_json_shape_and_values(heap_and_s):
    heap, s = heap_and_s
    S = s.S
    got, _ = rows(heap, s)
    for (address, sizef, state, kind, index), rec in zip(got, s.chunks):
        doc = json.loads(render.chunk_json(address, sizef, state, kind, index, S))
        check_chunk_obj(doc, S)
        assert doc["address"] == rec.address and doc["size"] == rec.size
        assert doc["prev_inuse"] == bool(rec.size_field & 1)
        assert doc["is_mmapped"] is False and doc["non_main_arena"] is False
        assert (doc["state"], doc["bin"], doc["bin_index"]) == (rec.state, rec.bin, rec.index)
        assert doc["usable_size"] == rec.size - S


def test_chunk_json_flags_and_mmapped():
    doc = json.loads(render.chunk_json(0x7FFFF7000000, 0x22000 | 2, "in_use", None, None, 8))
    assert doc["is_mmapped"] is True and doc["prev_inuse"] is False
    assert doc["size"] == 0x22000 and doc["usable_size"] == 0x22000 - 16
    doc = json.loads(render.chunk_json(0x1000, 0x30 | 5, "free", "tcache", 1, 8))
    assert doc["prev_inuse"] is True and doc["non_main_arena"] is True and doc["is_mmapped"] is False
    assert doc["bin"] == "tcache" and doc["bin_index"] == 1 and doc["size"] == 0x30
    big = 1 << 70  # integers are unbounded JSON numbers
    doc = json.loads(render.chunk_json(big, 0x20, "in_use", None, None, 8))
    assert doc["address"] == big


def test_chunks_json_streaming(heap_and_s):
    heap, s = heap_and_s
    got, problems = rows(heap, s)
    pieces = list(render.chunks_json("2.36", s.arena,
                                     (render.chunk_json(a, f, st, k, i, s.S) for a, f, st, k, i in got),
                                     problems))
    doc = json.loads("".join(pieces))
    assert set(doc) == {"glibc", "arena", "chunks", "problems", "in_progress"}
    assert doc["glibc"] == "2.36" and doc["arena"] == s.arena and doc["problems"] == []
    assert [c["address"] for c in doc["chunks"]] == [c.address for c in s.chunks]
    for c in doc["chunks"]:
        check_chunk_obj(c, s.S)


def test_chunks_json_empty_and_with_problems():
    doc = json.loads("".join(render.chunks_json(None, 5, iter([]), [Problem(16, "bad \"size\"\n")])))
    assert doc == {"glibc": None, "arena": 5, "chunks": [], "problems": [{"address": 16, "message": "bad \"size\"\n"}],
                   "in_progress": []}


def test_chunks_json_problems_filled_while_streaming():
    """`problems` is read after the rows are used up (the walk appends to it as it goes)."""
    problems: List[Problem] = []

    def gen():
        yield render.chunk_json(0x1000, 0x21, "in_use", None, None, 8)
        problems.append(Problem(0x1020, "broken"))

    doc = json.loads("".join(render.chunks_json("2.36", 1, gen(), problems)))
    assert doc["problems"] == [{"address": 0x1020, "message": "broken"}]


def test_bins_doc(heap_and_s):
    heap, s = heap_and_s
    chains, problems = heap.bins(heap.main_arena)
    doc = json.loads(json.dumps(render.bins_doc(s.arena, chains, problems)))
    assert set(doc) == {"arena", "bins", "problems"}
    assert doc["arena"] == s.arena and doc["problems"] == []
    for b in doc["bins"]:
        assert set(b) == {"kind", "index", "size", "count", "chunks"}
        assert all(is_int(b[k]) for k in ("index", "size", "count"))
        assert all(is_int(c) for c in b["chunks"])
    assert [(b["kind"], b["index"], b["size"], b["count"], b["chunks"]) for b in doc["bins"]] == [
        (c.kind, c.index, c.size, c.count, c.chunks) for c in s.chains]


def test_bins_doc_problems():
    doc = render.bins_doc(1, [], [Problem(0x10, "loop", "abort")])
    assert doc["problems"] == [{"address": 0x10, "message": "loop"}]


def test_top_doc(heap_and_s):
    heap, s = heap_and_s
    doc = json.loads(json.dumps(render.top_doc(heap.top(heap.main_arena))))
    assert doc == {"arena": s.arena, "address": s.top, "size": s.top_size, "end": s.heap_end}


def test_arena_doc(heap_and_s):
    heap, s = heap_and_s
    doc = json.loads(json.dumps(render.arena_doc(heap.main_arena)))
    required = {"address", "main", "top", "system_mem", "next", "heaps"}
    assert required <= set(doc)  # the contract allows added keys
    assert doc["address"] == s.arena and doc["main"] is True and doc["top"] == s.top
    assert doc["system_mem"] == s.heap_end - s.sbrk_base and doc["next"] == s.arena
    assert doc["heaps"] == [{"start": s.sbrk_base, "end": s.heap_end}]


def test_summary_doc(heap_and_s):
    heap, s = heap_and_s
    counts: Dict[Tuple[str, Optional[str], int], int] = {}
    for rec in s.chunks:
        key = (rec.state, rec.bin, rec.size)
        counts[key] = counts.get(key, 0) + 1
    doc = json.loads(json.dumps(render.summary_doc(s.arena, counts)))
    assert set(doc) == {"arena", "summary"} and doc["arena"] == s.arena
    for row in doc["summary"]:
        assert set(row) == {"state", "bin", "size", "count", "bytes"}
        assert row["bytes"] == row["size"] * row["count"]
        assert counts[row["state"], row["bin"], row["size"]] == row["count"]
    assert len(doc["summary"]) == len(counts)
    assert sum(r["count"] for r in doc["summary"]) == len(s.chunks)
    states = [r["state"] for r in doc["summary"]]
    assert states == sorted(states, key=["in_use", "free", "top"].index)


def test_problem_json():
    p = Problem(0x20, "msg", "malloc(): corrupted top size")
    assert render.problem_json(p) == {"address": 0x20, "message": "msg"}
    assert render.problem_json(p, True) == {"address": 0x20, "message": "msg",
                                            "glibc_abort": "malloc(): corrupted top size", "other_paths": []}
    assert render.problem_json(Problem(1, "x"), True)["glibc_abort"] is None
    other = Problem(1, "x", None, (("malloc_consolidate", "malloc_consolidate(): invalid chunk size"),))
    assert render.problem_json(other, True)["other_paths"] == [
        {"path": "malloc_consolidate", "glibc_abort": "malloc_consolidate(): invalid chunk size"}]
    line = next(render.problem_lines([other], Style(False)))
    assert line == 'problem at 0x1: x (malloc_consolidate: "malloc_consolidate(): invalid chunk size")'


# -- text ------------------------------------------------------------------------------------------------

def plain_lines(lines):
    out = list(lines)
    for line in out:
        assert ESC not in line
    return out


def test_chunk_lines(heap_and_s):
    heap, s = heap_and_s
    got, _ = rows(heap, s)
    lines = plain_lines(render.chunk_lines(got, lambda a: b"ABCDEFGH\x00\x01" + bytes(6), Style(False)))
    assert len(lines) == len(s.chunks) + 1  # a heading
    for line, rec in zip(lines[1:], s.chunks):
        assert f"{rec.address:#x}"[2:] in line
        assert f"{rec.size:#x}" in line
        if rec.state == "free":
            assert ("unsorted" if rec.bin == "unsorted" else f"{rec.bin}[{rec.index}]") in line
        elif rec.state == "in_use":
            assert "in use" in line and "ABCDEFGH.." in line
        else:
            assert "top" in line
    assert "P" in lines[1]


def test_bins_lines(heap_and_s):
    heap, s = heap_and_s
    chains, problems = heap.bins(heap.main_arena)

    def size_of(chunk):
        return s.chunk(chunk).size

    text = "\n".join(plain_lines(render.bins_lines(chains, problems, Style(False), size_of, s.tcache)))
    for c in s.chains:
        assert ("unsorted" if c.kind == "unsorted" else f"{c.kind}[{c.index}]") in text
        for chunk in c.chunks:
            assert f"{chunk:#x}" in text
    assert f"{s.tcache:#x}" in text
    assert "no chunks" in "\n".join(render.bins_lines([], [], Style(False), size_of, None))


def test_bins_lines_fit_the_width():
    """A large bin of short (static, non-PIE) addresses: each line fits 80 columns, counted by hand:
    "    ->" then " 0x4ccb90 (0x470)" (17) per chunk and " ->" (3) between them: three chunks
    make 6 + 3 * 17 + 3 * 3 = 66 columns with the trailing arrow, a fourth (the last) would make 83."""
    chunks = [0x4CCB90, 0x4CD020, 0x4CD8F0, 0x4CD490]
    sizes = [0x470, 0x450, 0x450, 0x440]
    chain = model.BinChain("large", 3, 0x440, len(chunks), chunks, sizes=sizes)
    lines = plain_lines(render.bins_lines([chain], [], Style(False), lambda _: None, None, width=80))
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[2] == "    -> 0x4ccb90 (0x470) -> 0x4cd020 (0x450) -> 0x4cd8f0 (0x450) ->"
    assert lines[3] == "       0x4cd490 (0x440)"


def test_top_and_arena_lines(heap_and_s):
    heap, s = heap_and_s
    arena = heap.main_arena
    text = "\n".join(plain_lines(render.top_lines(heap.top(arena), arena, Style(False))))
    assert f"{s.top:#x}" in text and f"{s.top_size:#x}" in text and f"{s.heap_end:#x}" in text
    text = "\n".join(plain_lines(render.arena_lines(arena, Style(False))))
    assert f"{s.arena:#x}" in text and f"{s.top:#x}" in text and f"{s.sbrk_base:#x}" in text
    assert "main arena" in text


def test_summary_and_problem_lines():
    counts = {("in_use", None, 0x20): 3, ("free", "tcache", 0x30): 2, ("top", None, 0x1000): 1}
    lines = plain_lines(render.summary_lines(counts, Style(False)))
    assert any("0x30" in line and "tcache" in line for line in lines)
    assert "6" in lines[-1] and str(3 * 0x20 + 2 * 0x30 + 0x1000) in lines[-1]
    plines = plain_lines(render.problem_lines([Problem(0xDEAD0, "broken", "free(): invalid size")],
                                              Style(False)))
    assert plines == ['problem at 0xdead0: broken (glibc would abort: "free(): invalid size")']


def test_chunk_detail_lines(heap_and_s):
    heap, s = heap_and_s
    rec = next(c for c in s.chunks if c.bin == "tcache")
    view = views.chunk_view(heap, rec.address + 2 * s.S)
    text = "\n".join(plain_lines(render.chunk_detail_lines(view, s.layout, Style(False))))
    assert f"{rec.address:#x}" in text and f"{rec.address + 2 * s.S:#x}" in text
    assert "understood as the user pointer malloc returned" in text
    low, high = s.layout.requests_for(rec.size)
    assert f"malloc({low})" in text and f"malloc({high})" in text


def test_chunk_json_is_chunk_doc():
    """The fast string and the dict are one shape: every flag, state and bin."""
    for sizef in range(0x40, 0x48):
        for state, kind, index in (("in_use", None, None), ("top", None, None), ("free", "small", 3)):
            c = model.Chunk(0x1000, sizef, state, kind, index, 8)
            assert json.loads(render.chunk_json(0x1000, sizef, state, kind, index, 8)) == render.chunk_doc(c)
    assert tuple(render.chunk_doc(model.Chunk(0x1000, 0x21, "in_use", None, None, 8))) == render.CHUNK_KEYS


def test_flags_and_state_text():
    assert render.flags_text(0x21) == "P.."
    assert render.flags_text(0x27) == "PMN"
    assert model.state_text("free", "small", 16) == "free small[16]"
    assert model.state_text("in_use", None, None) == "in use"
    assert render.human(100) == "100 B" and render.human(2048) == "2.0 KiB"


def test_style_plain_and_coloured():
    plain = Style(False)
    assert plain("address", "0x10") == "0x10"
    pytest.importorskip("pygments")
    coloured = Style(True)
    text = coloured("address", "0x10")
    assert ESC in text and "0x10" in text
    lines = list(render.chunk_lines([(0x1000, 0x21, "in_use", None, None)], lambda a: b"x" * 16, coloured))
    assert any(ESC in line for line in lines)
    assert coloured("address", "") == ""
