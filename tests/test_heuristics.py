"""Finding malloc's state without symbols, on synthetic images whose addresses the builder chose."""

import pytest

from gdb_heap import heuristics
from gdb_heap.layouts import FEATURES
from tests.synthetic import every_bin_heap, uninitialised_image

VERSIONS = [v for v, _ in FEATURES]


@pytest.mark.parametrize("word", [8, 4])
@pytest.mark.parametrize("version", VERSIONS)
def test_main_arena_and_mp_found_in_libc_data(version, word):
    _, s = every_bin_heap(version, word)
    reader = s.reader()
    libc = (s.libc_base, s.libc_base + len(s.libc_bytes))
    arenas = heuristics.arena_candidates(reader, s.layout, [libc])
    assert [c.address for c in arenas] == [s.arena]
    mps = heuristics.mp_candidates(reader, s.layout, [libc], s.arena)
    assert [c.address for c in mps] == [s.mp]


@pytest.mark.parametrize("word", [8, 4])
def test_uninitialised_arena_is_found_and_has_no_mp(word):
    s = uninitialised_image((2, 36), word)
    reader = s.reader()
    libc = (s.libc_base, s.libc_base + len(s.libc_bytes))
    assert [c.address for c in heuristics.arena_candidates(reader, s.layout, [libc])] == [s.arena]
    assert heuristics.mp_candidates(reader, s.layout, [libc], s.arena) == []


def test_no_arena_in_unrelated_data():
    _, s = every_bin_heap((2, 36), 8)
    reader = s.reader()
    heap = (s.sbrk_base, s.heap_end)
    assert heuristics.arena_candidates(reader, s.layout, [heap]) == []


def test_damaged_arena_is_not_a_candidate():
    _, s = every_bin_heap((2, 36), 8)
    s.poke(s.arena + s.layout.malloc_state.offset("next"), s.arena + 8)  # next leads nowhere sane
    reader = s.reader()
    libc = (s.libc_base, s.libc_base + len(s.libc_bytes))
    assert heuristics.arena_candidates(reader, s.layout, [libc]) == []


@pytest.mark.parametrize("word", [8, 4])
@pytest.mark.parametrize("version", [(2, 27), (2, 31), (2, 36), (2, 43)])
def test_version_inferred_from_memory_includes_the_truth(version, word):
    _, s = every_bin_heap(version, word)
    found = [f.version for f in heuristics.infer_state(s.reader(), word, [], s.arena, s.mp)]
    # The versions are rows of the table; the truth's row (the newest row at or before it) must fit.
    row = max(v for v in VERSIONS if v <= version)
    assert row in found


@pytest.mark.parametrize("word", [8, 4])
@pytest.mark.parametrize("version", [(2, 27), (2, 29), (2, 30), (2, 31), (2, 32), (2, 36), (2, 41), (2, 42), (2, 43),
                                     (2, 44)])
def test_version_narrowed_by_the_tcache_chunk(version, word):
    """Static binaries carry no version string: the first chunk (the tcache struct) and its
    chains' safe-linking pick the row; the truth's row must be the newest one left."""
    _, s = every_bin_heap(version, word)
    reader = s.reader()
    found = [f.version for f in heuristics.infer_state(reader, word, [], s.arena, s.mp)]
    narrowed = heuristics.narrow_versions(reader, word, found, s.sbrk_base)
    row = max(v for v in VERSIONS if v <= version)
    assert row in narrowed
    # Rows that read the same: 2.37 changed only global_max_fast's type, 2.44 only dropped
    # mp_'s last field; nothing reads either.
    alike = [{(2, 35), (2, 37)}, {(2, 43), (2, 44)}]
    allowed = next((group for group in alike if row in group), {row})
    assert set(narrowed) <= allowed and row in narrowed, narrowed


@pytest.mark.parametrize("word", [8, 4])
def test_pristine_arena_before_the_first_malloc(word):
    """Before malloc's first call only `next = &main_arena` and attached_threads = 1 are set."""
    from gdb_heap.layouts import layout_for
    from gdb_heap.memory import ImageMemory, Reader
    L = layout_for((2, 36), word)
    base = 0x7F0000000000 if word == 8 else 0xF7000000
    data = bytearray(0x2000)
    arena = base + 0x840
    off = 0x840 + L.malloc_state.offset("next")
    data[off:off + word] = arena.to_bytes(word, "little")
    off = 0x840 + L.malloc_state.offset("attached_threads")
    data[off:off + word] = (1).to_bytes(word, "little")
    reader = Reader(ImageMemory({base: data}), word)
    assert heuristics.pristine_arena_candidates(reader, L, [(base, base + len(data))]) == [arena]
    assert heuristics.arena_candidates(reader, L, [(base, base + len(data))]) == []


def test_choose_names_the_candidates_and_the_setting():
    from gdb_heap.errors import HeapError
    C = heuristics.Candidate
    assert heuristics.choose("main_arena", [C(0x1000, 5)], "libc.so.6's data", "main-arena") == 0x1000
    assert heuristics.choose("mp_", [C(0x2000, 7), C(0x3000, 4)], "x", "mp") == 0x2000  # clearly better
    with pytest.raises(HeapError, match=r"several main_arena candidates in x \(0x1000, 0x2000\); "
                                        r"choose one with set heap main-arena ADDR"):
        heuristics.choose("main_arena", [C(0x1000, 5), C(0x2000, 5)], "x", "main-arena")
    with pytest.raises(HeapError, match="no mp_ found in x.*set heap mp ADDR"):
        heuristics.choose("mp_", [], "x", "mp")


def test_two_arenas_in_the_data_are_both_listed():
    """A second self-consistent copy of main_arena (and of the heap it points into) leaves the
    heuristic two equal candidates: it must not pick one silently."""
    _, s = every_bin_heap((2, 36), 8)
    from gdb_heap.memory import ImageMemory, Reader
    size = s.layout.malloc_state.size
    copy_at = s.libc_base + 0x3000 + (s.arena - s.libc_base)
    copy = bytearray(0x3000)
    off = s.arena - s.libc_base
    raw = s.libc_bytes[off:off + size]
    # Rebase the copy's self-pointers (bins, next) onto the copy.
    delta = copy_at - s.arena
    for k in range(0, size, 8):
        w = int.from_bytes(raw[k:k + 8], "little")
        if s.arena <= w < s.arena + size:
            w += delta
        copy[off + k:off + k + 8] = w.to_bytes(8, "little")
    memory = ImageMemory({s.sbrk_base: s.heap_bytes, s.libc_base: s.libc_bytes, s.libc_base + 0x3000: copy})
    found = heuristics.arena_candidates(Reader(memory, 8), s.layout, [(s.libc_base, s.libc_base + 0x6000)])
    assert sorted(c.address for c in found) == [s.arena, copy_at]
    from gdb_heap.errors import HeapError
    with pytest.raises(HeapError, match="several main_arena candidates"):
        heuristics.choose("main_arena", found, "libc", "main-arena")


def test_version_from_the_banner_in_memory():
    from gdb_heap.mappings import Mapping
    from gdb_heap.memory import ImageMemory, Reader
    text = b"\0GNU C Library (Debian GLIBC 2.41-12) stable release version 2.41.\n\0"
    base = 0x7F0000000000
    data = bytearray(0x2000)
    data[0x1234:0x1234 + len(text)] = text
    reader = Reader(ImageMemory({base: data, base + 0x2000: bytearray(0x1000)}), 8)
    maps = [Mapping(base, base + 0x2000, "/nonexistent/libc.so.6"),
            Mapping(base + 0x2000, base + 0x3000, "/nonexistent/libc.so.6", writable=True)]
    assert heuristics.banner_version(reader, maps, "/nonexistent/libc.so.6") == (2, 41)
    assert heuristics.banner_version(reader, maps[1:], "/nonexistent/libc.so.6") is None


@pytest.mark.parametrize("word", [8, 4])
def test_infer_state_by_search_finds_the_builders_addresses_best_first(word):
    """No symbol at all: main_arena and mp_ searched in libc's data span; every row that fits
    names the builder's main_arena and mp_, best score first, newest row first among equals."""
    _, s = every_bin_heap((2, 36), word)
    libc = (s.libc_base, s.libc_base + len(s.libc_bytes))
    searched = heuristics.infer_state(s.reader(), word, [libc])
    assert searched and {(f.main_arena, f.mp) for f in searched} == {(s.arena, s.mp)}
    assert (2, 36) in [f.version for f in searched] or max(v for v in VERSIONS if v <= (2, 36)) in [
        f.version for f in searched]
    keys = [(-f.score, tuple(-x for x in f.version)) for f in searched]
    assert keys == sorted(keys) and all(f.score > 0 for f in searched)
    assert len({f.version for f in searched}) == len(searched)  # one answer per row
    known = heuristics.infer_state(s.reader(), word, [libc], s.arena)
    assert [(f.version, f.main_arena, f.mp) for f in known] == [(f.version, f.main_arena, f.mp) for f in searched]
    assert heuristics.infer_state(s.reader(), word, []) == []  # nothing to search, nothing known


def test_the_banner_search_reads_at_most_8_mib_of_libc_and_skips_what_it_cannot():
    from gdb_heap.mappings import Mapping
    from gdb_heap.memory import ImageMemory, Reader
    text = b"\0GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n\0"
    lib = "/nonexistent/libc.so.6"
    MiB = 1 << 20
    a, b, c = 0x7F0000000000, 0x7F1000000000, 0x7F2000000000
    big = bytearray(8 * MiB)  # exactly the budget: read
    big[-len(text):] = text
    five, four = bytearray(5 * MiB), bytearray(4 * MiB)
    four[:len(text)] = text
    reader = Reader(ImageMemory({a: big, b: five, c: four}), 8)
    unreadable = Mapping(0x10000, 0x11000, lib)
    other = Mapping(a, a + 8 * MiB, "/nonexistent/other.so")
    assert heuristics.banner_version(reader, [Mapping(a, a + 8 * MiB, lib)], lib) == (2, 36)
    # an unreadable mapping counts against the budget (its 4 KiB), then the search goes on
    assert heuristics.banner_version(reader, [unreadable, other, Mapping(c, c + 4 * MiB, lib)], lib) == (2, 36)
    assert heuristics.banner_version(reader, [unreadable, Mapping(a, a + 8 * MiB, lib)], lib) is None
    assert heuristics.banner_version(reader, [Mapping(a, a + 8 * MiB + 0x1000, lib)], lib) is None  # too big
    # 5 MiB read first leaves 3 MiB: the 4 MiB mapping holding the banner is not read
    assert heuristics.banner_version(reader, [Mapping(b, b + 5 * MiB, lib), Mapping(c, c + 4 * MiB, lib)],
                                     lib) is None
    assert heuristics.banner_version(reader, [Mapping(c, c + 4 * MiB, lib), Mapping(b, b + 5 * MiB, lib)],
                                     lib) == (2, 36)


def test_chains_end_cleanly_within_64_steps():
    """tcache chains written by hand in a big chunk's data (2.36: safe-linked, PROTECT_PTR(pos, p)
    = (pos >> 12) ^ p): 64 entries end cleanly, 65 do not (the walk stops at 64), nor does a
    misaligned or unreadable entry."""
    from tests.synthetic import HeapBuilder
    b = HeapBuilder((2, 36), 8)
    data = b.chunk(0x500) + 0x10
    b.chunk(0x20)
    s = b.build()
    tcache = s.tcache
    assert tcache is not None
    heads = tcache + 0x80  # entries[0]; counts are uint16[64] before them

    def chain(n: int) -> None:
        nodes = [data + 0x10 * i for i in range(n)]
        for here, nxt in zip(nodes, nodes[1:] + [0]):
            s.poke(here, (here >> 12) ^ nxt)
        s.poke(heads, nodes[0])

    def clean() -> bool:
        return heuristics._chains_end_cleanly(s.reader(), s.layout, tcache)

    assert clean()
    chain(64)
    assert clean()
    chain(65)
    assert not clean()
    s.poke(heads, data + 8)  # misaligned
    assert not clean()
    s.poke(heads, 0x10)  # aligned, unreadable
    assert not clean()
    assert not heuristics._chains_end_cleanly(s.reader(), s.layout, 0x10)
