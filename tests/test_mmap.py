"""Mmapped chunks: c_samples/mmapped.c against the pointers it printed, glibc's own counters
(mp_.n_mmaps through debug info, malloc_info's mmap total) and mmap arithmetic by hand."""

import json
import xml.etree.ElementTree as ET

import pytest

from tests.gdbrun import ANSI, doc, facts, gdb_batch, host_glibc, no_traceback, probe, sample, version_tuple

COMMANDS = ["heap mmapped --json", "heap mmapped", "up", "heap chunk d", "heap chunk a",
            "heap chunk e --json", "heap chunks --json"]
PAGE = 4096
# From glibc 2.43 an mmapped chunk's size leaves out a header at the end of its mapping.
TAIL_HEADER = version_tuple(host_glibc()) >= (2, 43)


def request2size(n, S=8, A=16):
    return max((4 * S + A - 1) // A * A, (n + S + A - 1) // A * A)


def mmap_size(n, S=8):
    """sysmalloc_mmap: ALIGN_UP(request2size(n) + SIZE_SZ, pagesize) bytes, plus MALLOC_ALIGN_MASK
    where MALLOC_ALIGNMENT (16) exceeds the chunk header (i386) (glibc <= 2.42)."""
    return (request2size(n, S) + S + (15 if S == 4 else 0) + PAGE - 1) // PAGE * PAGE


def correction(S):
    """i386: chunk2mem of a fresh mapping is 8 bytes off the 16-byte alignment, so sysmalloc
    starts the chunk 8 bytes in and records that as its prev_size."""
    return 8 if S == 4 else 0


def mapping_end(c, S):
    return c["address"] + c["size"] + (2 * S if TAIL_HEADER else 0)


@pytest.fixture(scope="module")
def run():
    return probe(sample("mmapped"), COMMANDS, chunk_for_pointers=True)


def stage(run, n):
    return next(r for r in run["stages"] if r["stage"] == n)


def expected(record):
    return {name: kind for name, kind in facts(record, "expect")}


def test_mmapped_chunks_are_the_printed_pointers(run):
    for n in (1, 2):
        record = stage(run, n)
        S = record["truth"]["S"]
        got = doc(record, "heap mmapped --json")
        ptrs = {name: (int(addr, 16), int(req)) for name, addr, req in facts(record, "ptr")}
        freed = {name for (name,) in facts(record, "free")}
        want = {ptrs[name][0] for name, kind in expected(record).items() if kind == "mmapped" and name not in freed}
        assert {c["user_address"] for c in got["chunks"]} == want
        count = facts(record, "n_mmaps")[-1][0]  # the facts so far: the last is this checkpoint's
        assert got["glibc_count"] == record["truth"]["n_mmaps"] == int(count) == len(got["chunks"])
        for c in got["chunks"]:
            name = next(k for k, (p, _) in ptrs.items() if p == c["user_address"])
            assert c["address"] == c["user_address"] - 2 * S
            assert c["mapping_start"] % PAGE == 0 and c["mapping_end"] % PAGE == 0
            assert c["mapping_start"] == c["address"] - c["prev_size"]
            assert c["mapping_end"] == mapping_end(c, S)  # prev_size + size (+ a header, 2.43) = the mapping
            if name == "aligned64k":  # memalign: the chunk moved up in its mapping
                assert c["user_address"] % 65536 == 0 and c["prev_size"] > 0
                assert c["size"] >= request2size(200000, S)
            elif not TAIL_HEADER:
                assert c["prev_size"] == correction(S)
                assert c["size"] == mmap_size(ptrs[name][1], S) - correction(S)
        # glibc's malloc_info counts the same mappings and bytes.
        heap = ET.fromstring(record["truth"]["malloc_info"])
        mmap_total = next(e for e in heap.findall("total") if e.get("type") == "mmap")
        assert int(mmap_total.get("count", "")) == len(got["chunks"])
        assert int(mmap_total.get("size", "")) == got["glibc_bytes"] == sum(
            c["mapping_end"] - c["mapping_start"] for c in got["chunks"])
        assert got["unreadable"] == []
        text = record["commands"]["heap mmapped"]["out"]
        assert f"{len(want)} mmapped chunks found" in text and f"glibc counts {count} (mp_.n_mmaps)" in text
        assert "but glibc counts" not in text


def test_chunk_on_an_mmapped_pointer(run):
    record = stage(run, 1)
    S = record["truth"]["S"]
    for name, addr, req in facts(record, "ptr"):
        c = doc(record, f"heap chunk {addr} --json")
        if expected(record).get(name) != "mmapped":
            assert not c["is_mmapped"] and c["arena"] == record["truth"]["main_arena"]
            continue
        assert c["is_mmapped"] and c["arena"] is None and c["understood_as"] == "user_pointer"
        assert c["usable_size"] == c["size"] - 2 * S >= int(req)
        assert c["mapping_start"] == c["address"] - c["prev_size"] and c["mapping_end"] == mapping_end(c, S)
        low, high = c["requests"]
        if name != "aligned64k" and not TAIL_HEADER:
            assert low <= int(req) <= high and mmap_size(high, S) == c["size"] + correction(S)
    aligned = record["commands"]["heap chunk d"]["out"]
    mm = next(x for x in doc(record, "heap mmapped --json")["chunks"] if x["prev_size"])
    assert f"prev_size     {mm['prev_size']:#x}: the alignment slack" in aligned
    assert f"mapping       {mm['mapping_start']:#x}-{mm['mapping_end']:#x}" in aligned
    assert "IS_MMAPPED" in record["commands"]["heap chunk a"]["out"]
    # No heap walk meets an mmapped chunk.
    assert not any(c["is_mmapped"] for c in doc(record, "heap chunks --json")["chunks"])


def test_dynamic_threshold_moves_the_next_one_onto_the_heap(run):
    """free(300000-byte mmapped chunk) raised mp_.mmap_threshold; the next malloc(300000) is a
    chunk of the main heap.  mp_.mmap_threshold is gdb's reading of glibc's debug info (in the
    truth session where the tool's session has none)."""
    first, second = stage(run, 1), stage(run, 2)
    assert first["truth"]["mmap_threshold"] == 128 * 1024
    m300k = next(int(a, 16) for name, a, _ in facts(first, "ptr") if name == "m300k")
    freed_size = next(c["size"] for c in doc(first, "heap mmapped --json")["chunks"] if c["user_address"] == m300k)
    assert second["truth"]["mmap_threshold"] == freed_size
    back = next(int(a, 16) for name, a, _ in facts(second, "ptr") if name == "back_on_heap")
    c = doc(second, "heap chunk e --json")
    assert c["user_address"] == back and not c["is_mmapped"] and c["arena"] == second["truth"]["main_arena"]
    assert c["state"] == "in_use" and c["size"] == request2size(300000, second["truth"]["S"])
    assert back in {x["user_address"] for x in doc(second, "heap chunks --json")["chunks"]}
    assert json.dumps(doc(second, "heap mmapped --json")).count('"address"') == 3


def test_help_completion_colour_and_errors():
    r = gdb_batch(["help heap mmapped", "help heap bins", "complete heap mm", "complete heap bins --all-t",
                   "complete heap mmapped --j"])
    assert "Usage: heap mmapped [--json [--output FILE]]" in r.stdout and "mp_.n_mmaps" in r.stdout
    assert "--all-threads" in r.stdout
    assert {"heap mmapped", "heap bins --all-threads", "heap mmapped --json"} <= set(r.stdout.splitlines())
    r = gdb_batch(["heap mmapped"], sample("mmapped"))
    assert r.stderr.strip().splitlines()[-1].startswith("heap: no process;") and r.returncode != 0
    r = gdb_batch(["break checkpoint", "run > /dev/null", "set height 24", "set style enabled on", "heap mmapped",
                   "heap mmapped --json"], sample("mmapped"))
    no_traceback(r.stdout + r.stderr)
    lines = [line for line in r.stdout.splitlines() if "0x" in line or line.startswith("{")]
    assert any(ANSI.search(line) for line in lines if not line.startswith("{"))
    assert not ANSI.search(next(line for line in lines if line.startswith("{")))


# -- mmapped chunks inside a mapping that does not start with one (c_samples/mmap_merged.c) --------

@pytest.fixture(scope="module")
def merged():
    return probe(sample("mmap_merged"), ["heap mmapped --json", "heap mmapped", "info proc mappings"])


def test_chunks_after_the_programs_own_pages_in_a_merged_mapping(merged):
    """The truth: the pointers the sample printed, mp_.n_mmaps read by gdb through debug info,
    malloc_info's mmap total (= mp_.mmapped_mem), and the kernel's own list of mappings."""
    record = stage(merged, 1)
    got = doc(record, "heap mmapped --json")
    ptrs = {name: int(addr, 16) for name, addr, _ in facts(record, "ptr")}
    own = int(facts(record, "addr")[0][1], 16)
    assert {c["user_address"] for c in got["chunks"]} == {ptrs["m1"], ptrs["m2"], ptrs["m3"]}
    assert got["glibc_count"] == record["truth"]["n_mmaps"] == 3
    heap = ET.fromstring(record["truth"]["malloc_info"])
    mmap_total = next(e for e in heap.findall("total") if e.get("type") == "mmap")
    assert int(mmap_total.get("size", "")) == got["glibc_bytes"] == sum(
        c["mapping_end"] - c["mapping_start"] for c in got["chunks"])
    # What makes the case: the kernel merged the program's own pages and m1's mapping into one
    # mapping that starts elsewhere, so m1 is only found at a page start inside it.
    maps = [tuple(int(x, 16) for x in line.split()[:2])
            for line in record["commands"]["info proc mappings"]["out"].splitlines()
            if line.strip().startswith("0x")]
    m1 = next(c for c in got["chunks"] if c["user_address"] == ptrs["m1"])
    start, end = next((s, e) for s, e in maps if s <= own < e)
    assert start < own and start <= m1["mapping_start"] < end and start != m1["mapping_start"]
    assert got["page_scan"]["complete"] and got["page_scan"]["found"] >= 1
    # The decoy on own's second page (IS_MMAPPED, a size past the mapping) is not a chunk.
    assert own + PAGE not in {c["address"] for c in got["chunks"]}
    text = record["commands"]["heap mmapped"]["out"]
    assert "3 mmapped chunks found" in text and "found at page starts inside merged anonymous mappings" in text
    assert "but glibc counts" not in text
