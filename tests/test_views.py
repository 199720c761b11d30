"""views.py: what each command shows, as plain data, on hand-built synthetic heaps.

Expected values are written by hand from how tests/synthetic.py lays the chunks out (sizes
given here, glibc's tcache index (size - 0x20) / 0x10 on x86-64), never computed by gdb_heap.
"""

from __future__ import annotations

import json

from gdb_heap import render, views
from gdb_heap.heap import ThreadInfo
from gdb_heap.mappings import Mapping
from gdb_heap.style import Style
from tests.synthetic import TCACHE_KEY, HeapBuilder

H = 0x10  # x86-64: the user pointer is 16 bytes past the chunk


def one_of_each():
    """x86-64, glibc 2.36: the tcache struct (0x290), then a chunk of each state with an in-use
    guard after each free one."""
    b = HeapBuilder((2, 36), 8)
    c = {"struct": b.plan[0][0]}
    c["used"] = b.chunk(0x20)
    c["tcache"] = b.chunk(0x30, "tcache")
    c["fast"] = b.chunk(0x20, "fast")
    c["guard1"] = b.chunk(0x20)
    c["small"] = b.chunk(0x100, "small")
    c["guard2"] = b.chunk(0x20)
    c["large"] = b.chunk(0x500, "large")
    c["guard3"] = b.chunk(0x20)
    c["unsorted"] = b.chunk(0x90, "unsorted")
    c["guard4"] = b.chunk(0x20)
    return b.build(), c


# -- heap ----------------------------------------------------------------------------------------

def test_overview_counts_every_chunk_but_top():
    s, _ = one_of_each()
    ov = views.overview(s.heap())
    # in use: the tcache struct, `used` and the four guards
    assert ov.counts == {"in_use": 6, "tcache": 1, "fast": 1, "unsorted": 1, "small": 1, "large": 1}
    assert ov.problems == []


def test_overview_reports_a_cut_chain():
    s, c = one_of_each()
    s.poke(c["fast"] + 2 * 8, (c["fast"] + 2 * 8 >> 12) ^ 0x10)  # fd -> 0x10, safe-linked
    ov = views.overview(s.heap())
    assert [p.address for p in ov.problems] == [c["fast"]]


# -- heap chunks ---------------------------------------------------------------------------------

def test_chunk_rows_classify_and_stop():
    s, c = one_of_each()
    heap = s.heap()
    rows = views.ChunkRows(heap, heap.main_arena)
    got = [(a, state, kind, index) for a, _, state, kind, index in rows]
    assert not rows.stopped and rows.problems == []
    assert got == [(c["struct"], "in_use", None, None), (c["used"], "in_use", None, None),
                   (c["tcache"], "free", "tcache", 1), (c["fast"], "free", "fast", 0),
                   (c["guard1"], "in_use", None, None), (c["small"], "free", "small", 16),
                   (c["guard2"], "in_use", None, None), (c["large"], "free", "large", 68),
                   (c["guard3"], "in_use", None, None), (c["unsorted"], "free", "unsorted", 1),
                   (c["guard4"], "in_use", None, None), (s.top, "top", None, None)]
    cut = views.ChunkRows(heap, heap.main_arena, 3)
    assert [r[0] for r in cut] == [c["struct"], c["used"], c["tcache"]] and cut.stopped
    whole = views.ChunkRows(heap, heap.main_arena, 12)  # exactly every chunk: nothing cut
    assert len(list(whole)) == 12 and not whole.stopped


def test_chunk_rows_classified_batches():
    # the same heap a walk batch at a time: positions of the chunks not in use, in that batch
    s, c = one_of_each()
    heap = s.heap()
    batches = list(views.ChunkRows(heap, heap.main_arena).classified())
    addresses = [a for batch, _, _ in batches for a in batch]
    assert addresses == [c["struct"], c["used"], c["tcache"], c["fast"], c["guard1"], c["small"], c["guard2"],
                         c["large"], c["guard3"], c["unsorted"], c["guard4"], s.top]
    special = {batch[i]: state for batch, _, states in batches for i, state in states.items()}
    assert special == {c["tcache"]: ("free", "tcache", 1), c["fast"]: ("free", "fast", 0),
                       c["small"]: ("free", "small", 16), c["large"]: ("free", "large", 68),
                       c["unsorted"]: ("free", "unsorted", 1), s.top: ("top", None, None)}
    cut = views.ChunkRows(heap, heap.main_arena, 4, views.ChunkFilter(state="in_use"))
    assert [(a, st) for batch, _, st in cut.classified() for a in batch] == [
        (c["struct"], {}), (c["used"], {}), (c["guard1"], {}), (c["guard2"], {})] and cut.stopped


def test_top_listed_by_a_bin_is_top_in_every_view():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    struct = s.tcache
    assert struct is not None
    s.poke(struct + s.layout.tcache_perthread.offset("entries"), s.top + H)  # tcache[0] lists top
    s.poke(struct + s.layout.tcache_perthread.fields[s.layout.counts_field][0], 1, 2)
    heap = s.heap()
    assert [r[2] for r in views.ChunkRows(heap, heap.main_arena)][-1] == "top"
    assert views.overview(heap).counts["tcache"] == 0
    assert views.chunk_view(heap, s.top).chunk.state == "top"


def test_tcache_structs_name_their_threads():
    s, c = one_of_each()
    other = ThreadInfo(2, 102, False, 0x7FFFF0000AA0, 0x7FFFF0000020)
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, s.arena), other]
    structs = views.tcache_structs(s.heap())
    assert structs == {c["struct"]: None, 0x7FFFF0000AA0 - H: other}
    notes = render.tcache_notes(structs)
    assert notes[0x7FFFF0000AA0 - H] == "tcache_perthread_struct of thread 2 (LWP 102)"


# -- heap chunk ----------------------------------------------------------------------------------

def test_chunk_view_of_an_inner_address():
    b = HeapBuilder((2, 36), 8)
    first = b.chunk(0x30, "tcache")
    guard = b.chunk(0x20)
    second = b.chunk(0x30, "tcache")  # freed after `first`: the list is second -> first
    s = b.build()
    heap = s.heap()
    view = views.chunk_view(heap, second + H + 0x18)
    w = view.where
    assert (w.chunk, w.how, w.offset, w.user_offset) == (second, "inside", 0x28, 0x18)
    assert [(link.name, link.value) for link in view.links] == [("next", first + H), ("key", TCACHE_KEY)]
    nxt = view.links[0]  # safe-linked: stored = (where >> 12) ^ pointer (PROTECT_PTR, by hand)
    assert (nxt.address, nxt.stored, nxt.revealed) == (second + H, ((second + H) >> 12) ^ (first + H), first + H)
    assert view.next is not None
    assert (view.next.address, view.next.size, view.next.state) == (s.top, s.top_size, "top")
    assert view.where.prev == guard
    assert view.requests == (25, 40)  # request + 8 rounded up to 16 is 0x30: malloc(25) to malloc(40)
    doc = render.chunk_view_doc(view)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["understood_as"] == "user_pointer" and doc["arena"] == s.arena and doc["requests"] == [25, 40]
    assert doc["inside"] == {"address": second + H + 0x18, "offset": 0x28, "user_offset": 0x18}
    assert (doc["address"], doc["state"], doc["bin"], doc["bin_index"]) == (second, "free", "tcache", 1)
    text = "\n".join(render.chunk_detail_lines(view, s.layout, Style(False)))
    assert f"understood as an address inside the chunk: 0x28 bytes into it, +0x18 from its user pointer " \
           f"{second + H:#x}" in text
    exact = render.chunk_view_doc(views.chunk_view(heap, second))
    assert exact["understood_as"] == "chunk" and "inside" not in exact


def test_chunk_view_of_an_mmapped_chunk():
    b = HeapBuilder((2, 36), 8)
    b.chunk(0x20)
    s = b.build()
    base, length = 0x7FFFF7000000, 0x22000
    region = bytearray(length)
    region[8:16] = (length | 2).to_bytes(8, "little")  # prev_size 0, size | IS_MMAPPED
    s.memory.add(base, region)
    s.anchors.mappings = lambda: ([Mapping(base, base + length)], "synthetic")
    view = views.chunk_view(s.heap(), base + 0x100)
    assert (view.where.chunk, view.where.state, view.where.arena, view.mapping) == (
        base, "mmapped", None, (base, base + length))
    doc = render.chunk_view_doc(view)
    assert (doc["state"], doc["is_mmapped"], doc["usable_size"], doc["arena"]) == ("in_use", True, length - 16, None)
    assert (doc["mapping_start"], doc["mapping_end"], doc["prev_size"]) == (base, base + length, 0)
    assert doc["inside"] == {"address": base + 0x100, "offset": 0x100, "user_offset": 0xF0}


# -- heap bins -----------------------------------------------------------------------------------

def threaded(s):
    me = ThreadInfo(1, 101, True, s.tcache, s.arena)
    s.anchors.threads = lambda: [me, ThreadInfo(2, 102, False, None, None)]
    return me


def test_bins_view_puts_the_selected_threads_tcache_with_its_arena():
    s, c = one_of_each()
    me = threaded(s)
    heap = s.heap()
    (view,) = views.bins_view(heap, heap.arenas)
    assert (view.tcache, view.owner, view.threads) == (s.tcache, me, None)
    assert [(ch.kind, ch.index, ch.chunks) for ch in view.chains] == [
        ("tcache", 1, [c["tcache"]]), ("fast", 0, [c["fast"]]), ("unsorted", 1, [c["unsorted"]]),
        ("small", 16, [c["small"]]), ("large", 68, [c["large"]])]
    doc = render.bins_view_doc(view)
    assert doc["bins"][0] == {"kind": "tcache", "index": 1, "size": 0x30, "count": 1, "chunks": [c["tcache"]],
                              "thread": 1, "lwp": 101}
    assert "thread" not in doc["bins"][1]


def test_bins_view_all_threads_merges_every_tcache_first():
    s, c = one_of_each()
    me = threaded(s)
    heap = s.heap()
    (view,) = views.bins_view(heap, heap.arenas, all_threads=True)
    assert view.tcache is None and [ch.kind for ch in view.chains] == ["fast", "unsorted", "small", "large"]
    assert view.threads is not None
    assert [(t.thread, t.address) for t in view.threads] == [(me, s.tcache)]  # thread 2 has no tcache
    doc = render.bins_view_doc(view)
    assert [(b["kind"], b.get("thread")) for b in doc["bins"]] == [
        ("tcache", 1), ("fast", None), ("unsorted", None), ("small", None), ("large", None)]
    text = "\n".join(render.bins_view_lines(view, Style(False), lambda _: None))
    assert "tcache of thread 1 (LWP 101), arena" in text
    (small,) = views.bins_view(heap, heap.arenas, ("small",), all_threads=True)  # no tcache asked for
    assert small.threads is None and [ch.kind for ch in small.chains] == ["small"]


def test_bins_view_all_threads_without_any_tcache():
    b = HeapBuilder((2, 36), 8, tcache=False)
    b.chunk(0x20)
    s = b.build()
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, None, s.arena)]
    heap = s.heap()
    (view,) = views.bins_view(heap, heap.arenas, all_threads=True)
    assert view.threads == []
    lines = list(render.bins_view_lines(view, Style(False), lambda _: None))
    assert lines == ["no thread has a tcache with chunks"]


# -- heap top ------------------------------------------------------------------------------------

def test_top_view():
    s, _ = one_of_each()
    heap = s.heap()
    view = views.top_view(heap, heap.main_arena)
    assert (view.top.address, view.top.size, view.top.end, view.problems) == (s.top, s.top_size, s.heap_end, [])
    s.poke(s.top + 8, 0x7FFFFFFFFFFFFFF1)  # house of force: far more than system_mem
    heap = s.heap()
    view = views.top_view(heap, heap.main_arena)
    assert [p.address for p in view.problems] == [s.top] and "system_mem" in view.problems[0].message
