"""pointers.py, the map and dump renderers, fitting text to a width: on synthetic heaps.

Expected values by hand: x86-64 glibc 2.36's malloc_state puts fastbinsY at 16, top at 96
and bins at 112, so bin_at(i) = arena + 112 + 16 * (i - 1) - 16 (malloc.c's bin_at)."""

from __future__ import annotations

import re

from gdb_heap import render, render_map, views
from gdb_heap.mappings import Mapping
from gdb_heap.pointers import Namer
from gdb_heap.style import Style
from gdb_heap.heap import ThreadInfo
from gdb_heap.symbols import Symbol, parse
from tests.test_views import one_of_each

H = 0x10


def test_a_pointer_is_named_chunk_arena_field_symbol_mapping():
    s, c = one_of_each()
    heap = s.heap()
    symbols = {0x7FFFF7F00010: Symbol("__free_hook", 0, "__free_hook in section .bss")}
    namer = Namer(heap, symbols.get, [Mapping(0x7FFFF7E00000, 0x7FFFF7F80000, "/usr/lib/libc.so.6")])
    assert namer.name(c["used"]) == f"chunk {c['used']:#x} (in use)"
    assert namer.name(c["tcache"] + H) == f"chunk {c['tcache']:#x}+0x10 (free tcache[1])"
    assert namer.name(c["small"] + 0x35) == f"chunk {c['small']:#x}+0x35 (free small[16])"
    assert namer.name(s.top + 8) == f"chunk {s.top:#x}+0x8 (top)"
    assert namer.name(s.arena + 96) == "<main_arena+96> unsorted (bin_at(1))"
    assert namer.name(s.arena + 112 + 15 * 16 - 16) == "<main_arena+336> small[16] (bin_at(16))"
    assert namer.name(s.arena + 16 + 8) == "<main_arena+24> fastbinsY[1]"
    assert namer.name(0x7FFFF7F00010) == "<__free_hook>"
    assert namer.name(0x7FFFF7E00100) == "in libc.so.6"
    assert namer.name(0) == "" and namer.name(0x10) == ""


def test_bin_heads():
    s, c = one_of_each()
    heap = s.heap()
    namer = Namer(heap)
    chains, _ = heap.bins(heap.main_arena)
    heads = {(ch.kind, ch.index): namer.bin_head(heap.main_arena, ch, s.tcache) for ch in chains}
    assert heads[("small", 16)] == "<main_arena+336>"
    assert heads[("unsorted", 1)] == "<main_arena+96>"
    assert heads[("fast", 0)] == "<main_arena+16>"
    # tcache_perthread_struct on 2.36: uint16 counts[64] (128 bytes), then entries[64]
    assert heads[("tcache", 1)] == f"{s.tcache + 128 + 8:#x}"


def test_detail_dump_and_map_read_the_words_in_byte_order():
    s, c = one_of_each()
    heap = s.heap()
    namer = Namer(heap)
    s.poke_bytes(c["used"] + H, b"ABCDEFGH" + bytes(range(8)))
    view = views.chunk_view(heap, c["used"] + H)
    text = "\n".join(render.chunk_detail_lines(view, s.layout, Style(False), namer.name, 80))
    assert "0x4847464544434241 0x0706050403020100 ABCDEFGH........" in text  # little-endian words
    dump = list(render.dump_lines(view.chunk, s.memory.read(c["used"], 0x20), view.links, Style(False)))
    assert dump[1].split()[1:3] == ["0x0000000000000000", "0x0000000000000021"] and "prev_size size" in dump[1]
    assert dump[2].split()[1:3] == ["0x4847464544434241", "0x0706050403020100"]
    fast = views.chunk_view(heap, c["fast"])
    link = fast.links[0]  # the fast bin holds this chunk alone: its fd is NULL, mangled
    assert (link.name, link.stored, link.revealed) == ("fd", (c["fast"] + H) >> 12, 0)
    lines = list(render_map.map_lines(views.map_view(heap, None, c["tcache"], 2), Style(False), namer.name, 8))
    assert lines[0].startswith(f"+ {c['tcache']:#x} 0x0000000000000000 0x0000000000000031")
    assert "0x30 P.. free tcache[1]" in lines[0]
    assert lines[1].startswith(f"| {c['tcache'] + H:#x} ")
    assert any(line.startswith(f"+ {c['fast']:#x} ") for line in lines)
    assert lines[-1] == f"(more: heap map {c['guard1']:#x} goes on)"


def test_map_colours_alternate_and_fit():
    s, c = one_of_each()
    heap = s.heap()
    lines = list(render_map.map_lines(views.map_view(heap, None, None, 4), Style(True), Namer(heap).name, 8,
                                      width=80))
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert all(len(line) <= 80 for line in plain)
    starts = [line for line in lines if re.sub(r"\x1b\[[0-9;]*m", "", line).startswith("+")]
    assert len(starts) == 4 and starts[0][:8] != starts[1][:8] and starts[0][:8] == starts[2][:8]


def test_fit_wraps_at_blanks_with_a_hanging_indent():
    assert render.fit("  aaa bbb ccc", 8) == ["  aaa", "      bbb", "      ccc"]
    assert render.fit("short", 80) == ["short"] and render.fit("x" * 100, None) == ["x" * 100]
    assert render.preview(b"ABCDEFGHIJKLMNOP", 8, "little", 18) == "0x4847464544434241"
    assert render.preview(b"ABCDEFGHIJKLMNOP", 8, "big", None) == "0x4142434445464748 0x494a4b4c4d4e4f50 " \
                                                                  "ABCDEFGHIJKLMNOP"


def test_a_pointer_into_a_thread_stack_mp_or_heap_info_is_named_as_heap_where_names_it():
    """The stacks as test_places builds them: three threads' stacks merged in one mapping, the
    owner the thread whose allocation (up to the page after its thread pointer) holds it."""
    s, c = one_of_each()
    stack = Mapping(0x7FFFF6400000, 0x7FFFF7C00000, "")
    s.anchors.threads = lambda: [
        ThreadInfo(2, 102, False, None, None, 0x7FFFF7BFEE00, 0x7FFFF7BFF6C0),
        ThreadInfo(3, 103, False, None, None, 0x7FFFF73FEE00, 0x7FFFF73FF6C0)]
    heap = s.heap()
    namer = Namer(heap, lambda a: None, [stack])
    assert namer.name(0x7FFFF73FEE18) == "thread 3's stack ($sp+0x18)"
    assert namer.name(0x7FFFF7BFED00) == "thread 2's stack ($sp-0x100)"
    # mp_ on 2.36 x86-64: trim_threshold, top_pad, mmap_threshold (size_t each) first
    assert namer.name(s.anchors.mp + 16) == "<mp_+16> mmap_threshold"
    assert namer.name(s.anchors.mp + 20) == "<mp_+20> mmap_threshold+4"


def test_info_symbol_parsed_once_for_every_command():
    sym = parse("main_arena + 96 in section .data of /lib/x86_64-linux-gnu/libc.so.6\n")
    assert sym is not None
    assert (sym.name, sym.offset, str(sym)) == ("main_arena", 96, "main_arena+96")
    fake = parse("fake in section .bss\n")
    assert fake is not None
    assert (fake.name, fake.offset, str(fake), fake.text) == ("fake", 0, "fake", "fake in section .bss")
    assert parse("No symbol matches 0x10.\n") is None and parse("") is None
