"""heap bins' text, every line, on tests/test_views.py's one_of_each heap (glibc 2.36, x86-64).

Heads by hand: the tcache_perthread_struct's entries[1] is 0x80 + 8 past it (2.36: uint16
counts[64] first); fastbinsY[0] is main_arena+16; bin_at(i) = main_arena + 0x70 + 16 * (i - 1)
- 16: unsorted +96, small[16] +336, large[68] +1168 (largebin_index_64(0x500) = 48 + (0x500 >> 6)).
The unsorted and large chains show each chunk's size (theirs vary); the others one size."""

from __future__ import annotations

from gdb_heap import render, views
from gdb_heap.heap import ThreadInfo
from gdb_heap.pointers import Namer
from gdb_heap.style import Style
from tests.synthetic import HeapBuilder
from tests.test_views import one_of_each, threaded


def text(all_threads=False, width=None, limit=None):
    s, c = one_of_each()
    threaded(s)
    heap = s.heap()
    names = Namer(heap)
    (view,) = views.bins_view(heap, heap.arenas, all_threads=all_threads)

    def head(chain, arena=view.arena, tcache=view.tcache):
        return names.bin_head(arena, chain, tcache)

    return s, c, list(render.bins_view_lines(view, Style(False), lambda ch: heap.reader.word(ch + 8) & ~7, head,
                                             width, limit, names.brief))


def rest(c):
    return [
        "fastbins",
        "  fast[0]  size 0x20  1 chunk  head <main_arena+16>",
        f"    -> {c['fast']:#x}",
        "unsorted bin",
        "  unsorted  sizes >= 0x20  1 chunk  head <main_arena+96>",
        f"    -> {c['unsorted']:#x} (0x90)",
        "small bins",
        "  small[16]  size 0x100  1 chunk  head <main_arena+336>",
        f"    -> {c['small']:#x}",
        "large bins",
        "  large[68]  sizes >= 0x500  1 chunk  head <main_arena+1168>",
        f"    -> {c['large']:#x} (0x500)"]


def test_the_selected_threads_tcache_with_its_arena():
    s, c, lines = text()
    assert lines == [
        f"tcache of thread 1 (LWP 101) (tcache_perthread_struct at {s.tcache:#x})",
        f"  tcache[1]  size 0x30  1 chunk  head {s.tcache + 0x88:#x}",
        f"    -> {c['tcache']:#x}"] + rest(c)


def test_every_threads_tcache_first_then_the_arena():
    s, c, lines = text(all_threads=True, width=60)
    assert lines == [
        f"tcache of thread 1 (LWP 101), arena {s.arena:#x}",  # wrapped at 60 columns
        f"    (tcache_perthread_struct at {s.tcache:#x})",
        "  tcache[1]  size 0x30  1 chunk",
        f"    -> {c['tcache']:#x}"] + rest(c)


def test_a_thread_without_an_arena_and_the_chain_limit():
    b = HeapBuilder((2, 36), 8)
    t = [b.chunk(0x30, "tcache") for _ in range(3)]
    b.chunk(0x20)
    s = b.build()
    s.anchors.threads = lambda: [ThreadInfo(1, 101, True, s.tcache, None)]
    heap = s.heap()
    (view,) = views.bins_view(heap, heap.arenas, all_threads=True)
    # the builder frees them in address order: the last freed is the bin's head
    head = [f"tcache of thread 1 (LWP 101) (tcache_perthread_struct at {s.tcache:#x})",
            "  tcache[1]  size 0x30  3 chunks"]
    assert list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, limit=2)) == head + [
        f"    -> {t[2]:#x} -> {t[1]:#x} -> ... 1 more"]
    assert list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, limit=3)) == head + [
        f"    -> {t[2]:#x} -> {t[1]:#x} -> {t[0]:#x}"]


def seven():
    b = HeapBuilder((2, 36), 8)
    t = [b.chunk(0x30, "tcache") for _ in range(7)]
    b.chunk(0x20)
    s = b.build()
    heap = s.heap()
    (view,) = views.bins_view(heap, heap.arenas)
    return [f"{x:#x}" for x in reversed(t)], view  # the last freed heads the bin


def test_a_long_chain_wraps_at_the_width():
    """Each address is 14 columns; a line starts "    ->" (6); a chunk costs " -> " and itself,
    and the " ->" after it when another follows: two fit in 50 columns (6 + 15 + 3 + 15 + 3 = 42;
    a third would reach 60), continuation lines are indented 6."""
    t, view = seven()
    lines = list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, width=50))[2:]
    assert lines == [f"    -> {t[0]} -> {t[1]} ->", f"       {t[2]} -> {t[3]} ->", f"       {t[4]} -> {t[5]} ->",
                     f"       {t[6]}"]
    # the last chunk needs no " ->" after it: at 57 columns it fits on the third line (39 + 18 = 57)
    lines = list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, width=57))[2:]
    assert lines == [f"    -> {t[0]} -> {t[1]} ->", f"       {t[2]} -> {t[3]} ->", f"       {t[4]} -> {t[5]} -> {t[6]}"]
    # with a limit: "... 5 more" (10 columns) is the last part
    lines = list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, width=50, limit=2))[2:]
    assert lines == [f"    -> {t[0]} -> {t[1]} ->", "       ... 5 more"]
    lines = list(render.bins_view_lines(view, Style(False), lambda ch: 0x30, width=53, limit=2))[2:]
    assert lines == [f"    -> {t[0]} -> {t[1]} -> ... 5 more"]
