"""Every arena, every thread: c_samples/arenas.c, checked against gdb's reading of glibc's debug
info (the arena ring, heap_info chains, each thread's thread_arena and *tcache), glibc's own
malloc_info() per arena, and the pointers and LWPs the sample printed."""

import xml.etree.ElementTree as ET
from typing import Any, Dict

import pytest

from tests.gdbrun import doc, facts, probe, sample

COMMANDS = ["heap arenas --json", "heap arenas", "heap --json", "heap chunks --all-arenas --json",
            "heap chunks --summary --all-arenas --json", "heap bins tcache --all-threads --json",
            "heap bins --all-threads --json", "heap bins tcache --all-threads", "heap bins tcache --json",
            "heap chunks --all-arenas", "thread 2", "heap bins --json tcache", "heap bins tcache", "thread 1"]


def request2size(n, S=8, A=16):
    return max((4 * S + A - 1) // A * A, (n + S + A - 1) // A * A)


def truth_readable(record):
    """The truth about threads comes from gdb's reading of TLS variables, which needs a
    libthread_db matching the inferior's glibc: without one these tests cannot judge."""
    errors = [t["error"] for t in record["truth"]["threads"].values() if "error" in t]
    assert not errors, f"gdb cannot read the threads' TLS variables here ({errors[0]}); these tests need a " \
        "gdb whose libthread_db matches the inferior's glibc"
    return record


@pytest.fixture(scope="module")
def arenas():
    (record,) = probe(sample("arenas"), COMMANDS, arenas_truth=True)["stages"]
    return truth_readable(record)


@pytest.fixture(scope="module")
def big():
    (record,) = probe(sample("arenas"), ["heap arenas --json", "heap chunks --all-arenas --json"], args=["big"],
                      arenas_truth=True)["stages"]
    return truth_readable(record)


def bin_kinds(record):
    """The kinds of bin fill_bins leaves chunks in: fastbins only where glibc has them (gdb finds
    malloc_state.fastbinsY in glibc's debug info: not from 2.43)."""
    kinds = {"tcache", "unsorted", "small", "large"}
    return kinds | {"fast"} if record["truth"]["fastbins"] is not None else kinds


def check_arenas(record):
    """heap arenas --json against the ring and heap_info chains gdb reads through debug info."""
    truth = record["truth"]["arenas"]
    got = doc(record, "heap arenas --json")["arenas"]
    assert [a["address"] for a in got] == [a["address"] for a in truth]
    for a, t in zip(got, truth):
        assert (a["top"], a["next"], a["system_mem"], a["attached_threads"]) == (
            t["top"], t["next"], t["system_mem"], t["attached_threads"])
        if a["main"]:
            assert a["address"] == record["truth"]["main_arena"] and len(a["heaps"]) == 1
            continue
        want = list(reversed(t["heaps"]))  # the chain runs newest to oldest; the contract: oldest first
        assert [(h["heap_info"], h["size"], h["mprotect_size"]) for h in a["heaps"]] == [
            (h["heap_info"], h["size"], h["mprotect_size"]) for h in want]
        assert all(h["ar_ptr"] == a["address"] for h in want)
        assert [h["start"] for h in a["heaps"]] == [h["heap_info"] for h in want]
        assert [h["end"] for h in a["heaps"]] == [h["heap_info"] + h["size"] for h in want]
    return got


def test_arenas_match_debug_info(arenas):
    """Every arena on the ring is some thread's thread_arena: main's, and one per worker as
    long as glibc's arena limit (8 or 2 per core, 64- or 32-bit) lets each have its own."""
    got = check_arenas(arenas)
    threads = arenas["truth"]["threads"]
    assert len(threads) == 4
    assert {a["address"] for a in got} == {th["arena"] for th in threads.values()}


def test_threads_attached_to_arenas(arenas):
    """Each arena names the threads whose thread_arena points at it (gdb's reading of the TLS
    variable), and each is the thread whose LWP the sample printed beside its pointers."""
    t = arenas["truth"]
    got = {a["address"]: a for a in doc(arenas, "heap arenas --json")["arenas"]}
    for address, a in got.items():
        want = sorted((int(n), th["lwp"]) for n, th in t["threads"].items() if th["arena"] == address)
        assert sorted((x["thread"], x["lwp"]) for x in a["threads"]) == want
    assert sum(len(a["threads"]) for a in got.values()) == len(t["threads"])
    assert doc(arenas, "heap --json")["arenas"] == list(got.values())
    # The sample's own word: thread T's chunks lie in the heap of the arena its LWP is listed in.
    S = t["S"]
    lwp_of = {int(tn): int(lwp) for tn, lwp in facts(arenas, "lwp")}
    assert len(lwp_of) == 4
    for name, addr, _ in facts(arenas, "ptr"):
        arena = next(a for a in got.values() if lwp_of[int(name.split("_")[0])] in [x["lwp"] for x in a["threads"]])
        chunk = int(addr, 16) - 2 * S
        assert any(h["start"] <= chunk < h["end"] for h in arena["heaps"]), name
    text = arenas["commands"]["heap arenas"]["out"]
    for lwp in lwp_of.values():
        assert f"(LWP {lwp})" in text
    assert "heap_info at" in text and "mprotect_size" in text


def test_every_bin_kind_in_every_arena(arenas):
    for a in doc(arenas, "heap chunks --summary --all-arenas --json")["arenas"]:
        kinds = {r["bin"] for r in a["summary"] if r["state"] == "free"}
        assert kinds == bin_kinds(arenas), a["arena"]


def test_arenas_against_malloc_info(arenas):
    """glibc's malloc_info() lists every arena in ring order: its system memory, its fastbin
    chunks (where glibc has fastbins), and 'rest' = top + bins 1..126 counted with their raw size
    words."""
    heaps = ET.fromstring(arenas["truth"]["malloc_info"]).findall("heap")
    ours = doc(arenas, "heap arenas --json")["arenas"]
    summaries = doc(arenas, "heap chunks --summary --all-arenas --json")["arenas"]
    assert len(heaps) == len(ours) == len(summaries)
    for heap, arena, summary in zip(heaps, ours, summaries):
        system = {e.get("type"): int(e.get("size", "")) for e in heap.findall("system")}
        assert system["current"] == arena["system_mem"]
        totals = {e.get("type"): (int(e.get("count", "")), int(e.get("size", ""))) for e in heap.findall("total")}
        rows = summary["summary"]
        fast = [r for r in rows if r["bin"] == "fast"]
        assert ("fast" in totals) == ("fast" in bin_kinds(arenas))
        assert totals.get("fast", (0, 0)) == (sum(r["count"] for r in fast), sum(r["bytes"] for r in fast))
        binned = [r for r in rows if r["bin"] in ("unsorted", "small", "large")]
        (top,) = [r for r in rows if r["state"] == "top"]
        # PREV_INUSE is set on every binned chunk's size word: + count
        assert totals["rest"] == (1 + sum(r["count"] for r in binned),
                                  top["size"] + sum(r["bytes"] + r["count"] for r in binned))


def tcache_by_thread(bins):
    out: Dict[int, Dict[int, Any]] = {}
    for b in bins:
        if b["kind"] == "tcache":
            out.setdefault(b["thread"], {})[b["index"]] = b
    return out


def test_every_threads_tcache(arenas):
    """--all-threads: every thread's tcache bins, each named by its thread; the chains are what
    gdb reads from that thread's *tcache, each bin full (mp_.tcache_count chunks)."""
    t = arenas["truth"]["threads"]
    full_bin = arenas["truth"]["tcache_count"]
    all_threads = doc(arenas, "heap bins tcache --all-threads --json")
    got = tcache_by_thread(all_threads["bins"])
    assert set(got) == {int(n) for n, th in t.items() if th["chunks"]} == {1, 2, 3, 4}
    for n, bins in got.items():
        th = t[str(n)]
        assert {b["lwp"] for b in bins.values()} == {th["lwp"]}
        assert sorted(c for b in bins.values() for c in b["chunks"]) == sorted(th["chunks"])
        assert all(b["count"] == len(b["chunks"]) == full_bin for b in bins.values())
    assert all_threads["problems"] == []
    # Without the bin filter: the same tcache bins, then the selected arena's other bins.
    full = doc(arenas, "heap bins --all-threads --json")
    assert [b for b in full["bins"] if b["kind"] == "tcache"] == all_threads["bins"]
    assert {b["kind"] for b in full["bins"]} == bin_kinds(arenas)
    text = arenas["commands"]["heap bins tcache --all-threads"]["out"]
    for n, th in t.items():
        assert f"tcache of thread {n} (LWP {th['lwp']}), arena {th['arena']:#x}" in text
    # heap chunks names each thread's tcache_perthread_struct chunk
    S = arenas["truth"]["S"]
    lines = arenas["commands"]["heap chunks --all-arenas"]["out"].splitlines()
    for n, th in t.items():
        label = ("(the selected thread's tcache)" if n == "1" else f"of thread {n} (LWP {th['lwp']})")
        line = next(x for x in lines if x.startswith(f"{th['tcache'] - 2 * S:#x} "))
        assert line.endswith(f"tcache_perthread_struct {label}"), line


def test_selected_threads_tcache_follows_gdb_thread(arenas):
    """heap bins tcache is the selected thread's; `thread 2` switches it, and its arena too."""
    t = arenas["truth"]["threads"]
    for command, n in (("heap bins tcache --json", "1"), ("heap bins --json tcache", "2")):
        bins = doc(arenas, command)
        assert bins["arena"] == t[n]["arena"]
        assert {b["thread"] for b in bins["bins"]} == {int(n)}
        assert sorted(c for b in bins["bins"] for c in b["chunks"]) == sorted(t[n]["chunks"])
    assert f"tcache of thread 2 (LWP {t['2']['lwp']}) (tcache_perthread_struct at {t['2']['tcache']:#x})" in \
        arenas["commands"]["heap bins tcache"]["out"]


def test_a_thread_arena_with_two_heaps(big):
    """Worker 1 outgrows its first heap (HEAP_MAX_SIZE: 64 MiB on 64-bit, 1 MiB on 32-bit): its
    arena has two heaps (heap_info chain), and the chunk walk goes through both, oldest first,
    over the old heap's fenceposts."""
    arenas = check_arenas(big)
    two = [a for a in arenas if len(a["heaps"]) == 2]
    assert len(two) == 1
    arena = two[0]
    (_, n), = facts(big, "big")
    chunks = next(a for a in doc(big, "heap chunks --all-arenas --json")["arenas"] if a["arena"] == arena["address"])
    assert chunks["problems"] == []
    S = big["truth"]["S"]
    addresses = [c["address"] for c in chunks["chunks"]]
    old, new = arena["heaps"]
    first_heap = [a for a in addresses if old["start"] <= a < old["end"]]
    second_heap = [a for a in addresses if new["start"] <= a < new["end"]]
    assert addresses == sorted(first_heap) + sorted(second_heap)  # oldest heap first, each in address order
    # The first heap's chunks start after heap_info and the malloc_state, the second's right
    # after its heap_info (sizes vary with the glibc version: bounds, and glibc's alignment).
    assert arena["address"] < first_heap[0] < arena["address"] + 0x900
    assert new["heap_info"] < second_heap[0] <= new["heap_info"] + 0x40
    assert all((a + 2 * S) % 16 == 0 for a in (first_heap[0], second_heap[0]))
    big_chunks = [c for c in chunks["chunks"] if c["size"] == request2size(120000, S)]
    assert len(big_chunks) == int(n)
    assert chunks["chunks"][-1]["state"] == "top" and chunks["chunks"][-1]["address"] == arena["top"]
    # The worker's fill_bins chunks went to the new heap.
    lwp_of = {int(tn): int(lwp) for tn, lwp in facts(big, "lwp")}
    assert [x["lwp"] for x in arena["threads"]] == [lwp_of[1]]
    mine = [int(addr, 16) - 2 * S for name, addr, _ in facts(big, "ptr") if name.startswith("1_")]
    assert mine and all(new["start"] <= c < new["end"] for c in mine)
    assert set(mine) <= set(addresses)
