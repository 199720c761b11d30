"""`heap chunk`'s text view against truth read outside gdb_heap, in one gdb session per sample:
the list pointers and the size word as gdb's own `x` command reads them, the flags decoded here
from that word, the usable bytes and the malloc(n) range from malloc.c's request2size done by
hand (by search, not by the tool's inverse formula); the samples' printed pointers name the
chunks.  Exact values, not bounds."""

import re
from typing import Dict, List, Optional, Tuple

import pytest

from tests.gdbrun import CONFIG, facts, gdb_batch, host_glibc, no_traceback, probe, sample, version_tuple

GLIBC = version_tuple(host_glibc())
S = 4 if CONFIG.arch == "i386" else 8
A = 16  # MALLOC_ALIGNMENT on x86-64 and on i386 (2.26+)
MINSIZE = 16 if S == 4 else 32
PAGE = 4096
MARK = "@@@ "


def request2size(n: int) -> int:
    """malloc.c: (req + SIZE_SZ + MALLOC_ALIGN_MASK) & ~MALLOC_ALIGN_MASK, at least MINSIZE."""
    return max(MINSIZE, (n + S + A - 1) & ~(A - 1))


def requests_by_search(size: int) -> Tuple[int, int]:
    """The smallest and largest n with request2size(n) == size, by trying every n near it."""
    ns = [n for n in range(max(0, size - 4 * A), size + 1) if request2size(n) == size]
    return ns[0], ns[-1]


def mmapped_requests_by_search(size: int) -> Tuple[int, int]:
    """sysmalloc_mmap up to 2.42 on x86-64: the mapping (= the chunk) is
    ALIGN_UP(request2size(n) + SIZE_SZ, pagesize) bytes."""
    ns = [n for n in range(size - 2 * PAGE, size + 1) if (request2size(n) + S + PAGE - 1) // PAGE * PAGE == size]
    return ns[0], ns[-1]


def reveal(field_address: int, stored: int) -> int:
    """REVEAL_PTR (2.32+): the stored word xor the field's address >> 12."""
    return stored ^ (field_address >> 12) if GLIBC >= (2, 32) else stored


def read_chunks(program: str, pointers: List[int]) -> Dict[int, Tuple[str, List[int]]]:
    """For each user pointer: `heap chunk P`'s text, and the words from the size field on as gdb's
    x command prints them (size, then the first four words of user data)."""
    unit = "w" if S == 4 else "g"
    commands = ["break checkpoint", "run > /dev/null"]
    for p in pointers:
        commands += [f"echo {MARK}{p:#x}\\n", f"heap chunk {p:#x}", f"echo {MARK}x\\n", f"x/5{unit}x {p - S:#x}"]
    gdb = gdb_batch(commands, program)
    no_traceback(gdb.stdout + gdb.stderr)
    parts = gdb.stdout.split(MARK)
    out: Dict[int, Tuple[str, List[int]]] = {}
    for head, xpart in zip(parts[1::2], parts[2::2]):
        address, _, text = head.partition("\n")
        words = [int(w, 16) for w in re.findall(r"\t(0x[0-9a-f]+)", xpart)]
        assert len(words) == 5, xpart
        out[int(address, 16)] = (text, words)
    assert sorted(out) == sorted(pointers), gdb.stdout[-2000:]
    return out


def line(text: str, label: str) -> str:
    hits = [ln for ln in text.splitlines() if ln.startswith(f"  {label:<13} ")]
    assert len(hits) == 1, (label, text)
    return hits[0][len(f"  {label:<13} "):]


def links(text: str) -> Dict[str, Tuple[int, Optional[int]]]:
    """Each link line's stored word and, safe-linked, the pointer it reveals."""
    names = ("fd", "bk", "fd_nextsize", "bk_nextsize", "tcache next", "tcache key")
    out: Dict[str, Tuple[int, Optional[int]]] = {}
    for n in names:
        if re.search(rf"^  {n} +0x", text, re.M):
            m = re.match(r"(0x[0-9a-f]+)(?: stored, (0x[0-9a-f]+) revealed)?(?::|$)", line(text, n))
            assert m, line(text, n)
            out[n] = (int(m.group(1), 16), int(m.group(2), 16) if m.group(2) else None)
    return out


def linked(field: int, stored: int) -> Tuple[int, Optional[int]]:
    """A safe-linked word (2.32+: the tcache's next, a fast bin's fd) and what it reveals."""
    return (stored, reveal(field, stored) if GLIBC >= (2, 32) else None)


def flag_names(size_word: int) -> str:
    """The size field decoded here: bit 0 PREV_INUSE, bit 1 IS_MMAPPED, bit 2 NON_MAIN_ARENA."""
    names = [n for bit, n in ((1, "PREV_INUSE"), (2, "IS_MMAPPED"), (4, "NON_MAIN_ARENA")) if size_word & bit]
    return " | ".join(names) or "0"


def check_header(text: str, p: int, words: List[int]) -> int:
    size_word = words[0]
    size = size_word & ~7
    assert line(text, "size") == (f"{size:#x} ({size} bytes; field {size_word:#x} = {size:#x} | "
                                  f"{flag_names(size_word)})")
    usable = size - (2 * S if size_word & 2 else S)
    assert line(text, "user data") == f"{p:#x}, {usable} usable bytes"
    return size


@pytest.fixture(scope="module")
def all_bins():
    record = probe(sample("all_bins"), truth=False, last_stage=1)["stages"][0]
    expect = dict((name, kind) for name, kind in facts(record, "expect"))
    ptrs = {name: (int(addr, 16), int(n)) for name, addr, n in facts(record, "ptr")}
    freed = {name for (name,) in facts(record, "free")}
    chosen: Dict[str, Tuple[int, int]] = {}
    for kind in ("tcache", "fast", "small", "large", "unsorted"):
        names = [name for name in ptrs if expect.get(name) == kind]
        if names:  # the last one freed: still in that bin where 2.43's bigger tcache takes the first 16
            chosen[kind] = ptrs[names[-1]]
    chosen["in_use"] = next(ptrs[name] for name in ptrs if name not in freed and name.startswith("guard"))
    chosen["sorter"] = ptrs["sorter"] if "sorter" in ptrs else chosen["in_use"]
    return chosen, read_chunks(sample("all_bins"), [p for p, _ in chosen.values()])


def test_in_use_chunk_header_usable_and_requests(all_bins):
    chosen, seen = all_bins
    for kind in ("in_use", "sorter"):
        p, n = chosen[kind]
        text, words = seen[p]
        size = check_header(text, p, words)
        assert size == request2size(n)
        assert line(text, "state") == "in use"
        low, high = requests_by_search(size)
        assert line(text, "requests").startswith(f"malloc({low}) to malloc({high}) give a chunk of this size")
        assert links(text) == {}


def test_free_chunks_links_are_the_words_in_their_user_data(all_bins):
    chosen, seen = all_bins
    checked = set()
    for kind in ("tcache", "fast", "small", "large", "unsorted"):
        if kind not in chosen:
            continue
        p, _ = chosen[kind]
        text, words = seen[p]
        check_header(text, p, words)
        state = line(text, "state")
        m = re.match(r"free (\w+)(?:\[\d+\])?$", state)  # "free unsorted" has no index
        assert m, state
        shown = m.group(1)
        if GLIBC == (2, 36) and CONFIG.arch == "amd64":
            assert shown == kind  # the sample's "@ expect" describes glibc 2.36 on x86-64
        user = words[1:]
        want: Dict[str, Tuple[int, Optional[int]]]
        if shown == "tcache":
            want = {"tcache next": linked(p, user[0])}  # e->next: the next entry's user pointer
            if GLIBC >= (2, 29):
                want["tcache key"] = (user[1], None)
        elif shown == "fast":
            want = {"fd": linked(p, user[0])}
        elif shown == "large":
            want = {n: (w, None) for n, w in zip(("fd", "bk", "fd_nextsize", "bk_nextsize"), user)}
        else:
            want = {"fd": (user[0], None), "bk": (user[1], None)}
        assert links(text) == want, (kind, text)
        checked.add(shown)
    if GLIBC == (2, 36) and CONFIG.arch == "amd64":
        assert {"small", "large", "unsorted"} <= checked
    assert checked & {"small", "large", "unsorted"}, "no chunk with fd/bk was checked"


@pytest.fixture(scope="module")
def threads():
    record = probe(sample("threads"), truth=False, last_stage=1)["stages"][0]
    freed = {name for (name,) in facts(record, "free")}
    ptrs = [(int(addr, 16), int(n)) for name, addr, n in facts(record, "ptr") if name not in freed]
    return ptrs[:2], read_chunks(sample("threads"), [p for p, _ in ptrs[:2]])


def test_thread_arena_chunk_says_non_main_arena(threads):
    ptrs, seen = threads
    for p, n in ptrs:
        text, words = seen[p]
        assert words[0] & 4, f"the sample's worker chunk {p:#x} should carry NON_MAIN_ARENA"
        size = check_header(text, p, words)
        assert size == request2size(n)
        assert "NON_MAIN_ARENA" in line(text, "size")
        assert line(text, "arena").endswith("(thread arena)")


@pytest.fixture(scope="module")
def mmapped():
    record = probe(sample("mmapped"), truth=False, last_stage=1)["stages"][0]
    ptrs = {name: (int(addr, 16), int(n)) for name, addr, n in facts(record, "ptr")}
    return ptrs, read_chunks(sample("mmapped"), [ptrs[name][0] for name in ("m200k", "m1m")])


def test_mmapped_chunk_requests_and_usable(mmapped):
    if CONFIG.arch != "amd64" or GLIBC >= (2, 43):
        pytest.skip("the mapping arithmetic here is sysmalloc_mmap's on x86-64 up to 2.42")
    ptrs, seen = mmapped
    for name in ("m200k", "m1m"):
        p, n = ptrs[name]
        text, words = seen[p]
        size = check_header(text, p, words)
        assert words[0] & 2 and size == (request2size(n) + S + PAGE - 1) // PAGE * PAGE
        low, high = mmapped_requests_by_search(size)
        assert low <= n <= high
        assert line(text, "requests").startswith(f"malloc({low}) to malloc({high}) give a mapping of this size")
        assert line(text, "mapping").startswith(f"{p - 2 * S:#x}-{p - 2 * S + size:#x} ")
