"""pointers.Namer's one-line names (heap chunks' link column), exact, on tests/test_views.py's
one_of_each heap (glibc 2.36, x86-64): bin_at(1) = main_arena+96, bin_at(16) = main_arena+336,
bin_at(68) = main_arena+1168 (see tests/test_pointers.py); tcache next and fastbin fd are
safe-linked: PROTECT_PTR(pos, p) = (pos >> 12) ^ p."""

from __future__ import annotations

from gdb_heap.mappings import Mapping
from gdb_heap.pointers import Namer
from gdb_heap.symbols import Symbol
from tests.synthetic import HeapBuilder
from tests.test_views import one_of_each

H = 0x10


def words(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def test_short_names():
    s, c = one_of_each()
    symbols = {0x7FFFF7F00010: Symbol("__free_hook", 0, "__free_hook in section .bss")}
    n = Namer(s.heap(), symbols.get, [Mapping(0x7FFFF7E00000, 0x7FFFF7F80000, "/usr/lib/libc.so.6")])
    assert n.short(c["used"]) == f"chunk {c['used']:#x}"
    assert n.short(c["used"] + H) == f"chunk {c['used']:#x}+0x10"
    assert n.short(0) == "NULL"
    assert n.short(0x10) == "0x10" and n.short(0xFFF) == "0xfff"  # below a page: never a chunk
    assert n.short(s.arena + 96) == "<main_arena+96>"  # an arena's name without its bin
    assert n.short(0x7FFFF7F00010) == "<__free_hook>"
    assert n.short(0x7FFFF7E00100) == "in libc.so.6"
    assert n.short(0xDEAD0000) == "0xdead0000"


def test_free_links_of_each_kind():
    s, c = one_of_each()
    n = Namer(s.heap())
    tc = c["tcache"] + H
    assert n.free_links(c["tcache"], "tcache", words(tc >> 12, 0)) == "next NULL"
    assert n.free_links(c["fast"], "fast", words((c["fast"] + H) >> 12)) == "fd NULL"
    # a link revealed to another chunk's user pointer
    assert n.free_links(c["tcache"], "tcache", words((tc >> 12) ^ (c["used"] + H))) == (
        f"next chunk {c['used']:#x}+0x10")
    assert n.free_links(c["fast"], "fast", words(((c["fast"] + H) >> 12) ^ c["used"])) == f"fd chunk {c['used']:#x}"
    assert n.free_links(c["unsorted"], "unsorted", words(s.arena + 96, s.arena + 96)) == (
        "fd <main_arena+96> bk <main_arena+96>")
    assert n.free_links(c["small"], "small", words(s.arena + 336, c["large"])) == (
        f"fd <main_arena+336> bk chunk {c['large']:#x}")
    assert n.free_links(c["large"], "large", words(0, 0x10)) == "fd NULL bk 0x10"
    assert n.free_links(c["small"], "small", words(1)) == ""  # one word: no bk
    assert n.free_links(c["tcache"], "tcache", b"") == ""
    assert n.free_links(c["used"], None, words(1, 2)) == ""
    big = words(s.arena + 96, s.arena + 96)[::-1]  # big-endian words
    assert n.free_links(c["unsorted"], "unsorted", big[8:] + big[:8], "big") == (
        "fd <main_arena+96> bk <main_arena+96>")


def test_free_links_before_safe_linking():
    b = HeapBuilder((2, 31), 8)
    t = b.chunk(0x30, "tcache")
    b.chunk(0x20)
    s = b.build()
    assert Namer(s.heap()).free_links(t, "tcache", words(0x20)) == "next 0x20"  # 2.31: stored as is


def test_brief():
    s, c = one_of_each()
    n = Namer(s.heap())
    assert n.brief(c["fast"]) == "chunk, free fast[0]"
    assert n.brief(c["used"]) == "chunk, in use"
    assert n.brief(c["tcache"] + H) == f"chunk {c['tcache']:#x}+0x10 (free tcache[1])"
    assert n.brief(s.arena + 96) == "<main_arena+96> unsorted (bin_at(1))"
    assert n.brief(0xDEAD0000) == ""


def test_short_names_a_thread_arenas_field_whole():
    """A thread arena's place holds a blank (`<arena 0x7ffff0000030+96>`): cut at the blank it
    was `<arena`.  tests/test_thread_arena.py's arena: malloc_state at 0x7ffff0000030, its
    heap_info at 0x7ffff0000000 (ar_ptr, prev, size)."""
    from tests.test_thread_arena import with_thread_arena
    _, heap = with_thread_arena()
    n = Namer(heap)
    assert n.short(0x7FFFF0000030 + 96) == "<arena 0x7ffff0000030+96>"
    assert n.short(0x7FFFF0000000 + 16) == "<heap_info 0x7ffff0000000+16>"
    assert n.free_links(0x7FFFF0000900, "unsorted", words(0x7FFFF0000090, 0x7FFFF0000090)) == (
        "fd <arena 0x7ffff0000030+96> bk <arena 0x7ffff0000030+96>")
