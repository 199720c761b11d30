"""Integration tests: gdb in batch mode on the samples, every command checked against truth
from outside gdb_heap: gdb's reading of glibc's debug info, the samples' printed pointers,
glibc's malloc_info() and request2size arithmetic done here by hand."""

import re
import xml.etree.ElementTree as ET

import pytest

from gdb_heap import registry
from tests.gdbrun import (ANSI, CONFIG, doc, facts, gdb_batch, host_glibc, json_doc, json_docs, no_traceback, probe,
    sample, skip_if_static_startup, version_tuple)

COMMANDS = ["heap --json", "heap chunks --json", "heap bins --json", "heap top --json", "heap arenas --json",
            "heap chunks --summary --json", "heap", "heap chunks", "heap bins", "heap top",
            "heap chunks --summary", "heap chunks --limit 3", "heap chunks --limit 3 --json"]
GLIBC = version_tuple(host_glibc())
SAFE_LINKING = GLIBC >= (2, 32)


def request2size(n, S=8, A=16):
    """malloc.c's request2size, by hand: n + SIZE_SZ rounded up to the alignment, >= MINSIZE."""
    minsize = (4 * S + A - 1) // A * A
    return max(minsize, (n + S + A - 1) // A * A)


@pytest.fixture(scope="module")
def all_bins():
    return probe(sample("all_bins"), COMMANDS, chunk_for_pointers=True)


@pytest.fixture(scope="module")
def first_malloc():
    return probe(sample("first_malloc"), COMMANDS, chunk_for_pointers=True)


@pytest.fixture(scope="module")
def top_trim():
    return probe(sample("top_trim"), ["heap top --json", "heap --json", "heap chunks --json"])


def stage(result, n):
    return next(r for r in result["stages"] if r["stage"] == n)


# -- the chunk walk --------------------------------------------------------------------------

def tcache_truth_readable(t):
    """The truth about tcache comes from gdb's `p *tcache`, which needs gdb's TLS support (a
    libthread_db matching the inferior's glibc).  Without it these tests cannot judge."""
    assert "entries" in t["tcache"] or t["tcache"].get("error") == "tcache is NULL", (
        f"gdb cannot read the TLS variable tcache here ({t['tcache'].get('error')}); "
        "these tests need a gdb whose libthread_db matches the inferior's glibc")


def check_glibc_version(found):
    if CONFIG.static and found is None:
        return  # a static program carries no glibc version string; the tool may only infer a range
    assert found == host_glibc()


def check_chunks_against_truth(record):
    t = record["truth"]
    tcache_truth_readable(t)
    chunks = doc(record, "heap chunks --json")
    assert chunks["arena"] == t["main_arena"]
    check_glibc_version(chunks["glibc"])
    got = [(c["address"], c["size"], c["prev_inuse"]) for c in chunks["chunks"]]
    want = [(a, s & ~7, bool(s & 1)) for a, s in t["chunks"]]
    assert got == want
    assert chunks["problems"] == []
    # States by bin membership, from gdb's own walk of every list.
    expected = {}
    for i, chain in t["bins"].items():
        kind = "unsorted" if i == "1" else "small" if int(i) < 64 else "large"
        for p in chain:
            expected[p] = (kind, int(i))
    for i, fb in (t["fastbins"] or {}).items():
        for p in fb["chain"]:
            expected[p] = ("fast", int(i))
    for i, chain in enumerate(t["tcache"].get("chains", [])):
        for e in chain:
            expected[e - 2 * t["S"]] = ("tcache", i)
    for c in chunks["chunks"]:
        if c["address"] == t["top"]:
            assert (c["state"], c["bin"]) == ("top", None)
        elif c["address"] in expected:
            assert (c["state"], c["bin"], c["bin_index"]) == ("free",) + expected[c["address"]], c
        else:
            assert (c["state"], c["bin"], c["bin_index"]) == ("in_use", None, None), c
        assert c["user_address"] == c["address"] + 2 * t["S"]
        assert c["usable_size"] == c["size"] - t["S"]
    return chunks


def test_all_bins_chunks_match_gdb(all_bins):
    chunks = check_chunks_against_truth(stage(all_bins, 1))
    # Every kind of bin is populated in this sample (the tcache in glibc < 2.43 fills at 7).
    kinds = {c["bin"] for c in chunks["chunks"] if c["state"] == "free"}
    assert {"tcache", "unsorted", "small", "large"} <= kinds
    if GLIBC < (2, 43):
        assert "fast" in kinds


def test_first_malloc_chunks_match_gdb(first_malloc):
    for record in first_malloc["stages"]:
        if record["truth"]["initialised"]:
            check_chunks_against_truth(record)


def test_top_trim_chunks_match_gdb(top_trim):
    for record in top_trim["stages"]:
        check_chunks_against_truth(record)


# -- bins ------------------------------------------------------------------------------------

def test_bins_match_gdb(all_bins):
    record = stage(all_bins, 1)
    t = record["truth"]
    tcache_truth_readable(t)
    bins = doc(record, "heap bins --json")
    assert bins["arena"] == t["main_arena"] and bins["problems"] == []
    got = {(b["kind"], b["index"]): b for b in bins["bins"]}
    want = {}
    for i, chain in t["bins"].items():
        kind = "unsorted" if i == "1" else "small" if int(i) < 64 else "large"
        want[(kind, int(i))] = chain
    for i, fb in (t["fastbins"] or {}).items():
        want[("fast", int(i))] = fb["chain"]
    tc = t["tcache"]
    for i, chain in enumerate(tc["chains"]):
        if chain:
            want[("tcache", i)] = [e - 2 * t["S"] for e in chain]
    assert {k: b["chunks"] for k, b in got.items()} == want
    for (kind, i), b in got.items():
        if kind == "tcache":
            count = tc["counts"][i] if tc["counts_field"] == "counts" else t["tcache_count"] - tc["counts"][i]
            assert b["count"] == count == len(b["chunks"])
            assert b["size"] == request2size(0, t["S"]) + 16 * i  # MINSIZE + index * MALLOC_ALIGNMENT
        else:
            assert b["count"] == len(b["chunks"])
        if kind in ("fast", "small"):
            sizes = {c["size"] for c in doc(record, "heap chunks --json")["chunks"] if c["address"] in b["chunks"]}
            assert sizes == {b["size"]}
    # Contract order: by kind, then index.
    order = ["tcache", "fast", "unsorted", "small", "large"]
    keys = [(order.index(b["kind"]), b["index"]) for b in bins["bins"]]
    assert keys == sorted(keys)


def test_large_bin_holds_several_sizes(all_bins):
    record = stage(all_bins, 1)
    sizes = {c["address"]: c["size"] for c in doc(record, "heap chunks --json")["chunks"]}
    large = [b for b in doc(record, "heap bins --json")["bins"] if b["kind"] == "large"]
    assert any(len({sizes[c] for c in b["chunks"]}) >= 3 for b in large)
    for b in large:  # a large bin is sorted by decreasing size along fd
        got = [sizes[c] for c in b["chunks"]]
        assert got == sorted(got, reverse=True)
        assert all(s >= b["size"] for s in got)


def test_bins_kind_filter(all_bins):
    gdb = gdb_batch(["break checkpoint", "run > /dev/null", "heap bins tcache --json", "heap bins small large --json"],
                    sample("all_bins"))
    no_traceback(gdb.stdout + gdb.stderr)
    docs = json_docs(gdb.stdout)
    assert {b["kind"] for b in docs[0]["bins"]} == {"tcache"}
    assert {b["kind"] for b in docs[1]["bins"]} == {"small", "large"}


# -- top, overview, arenas -------------------------------------------------------------------

def test_top_matches_gdb(all_bins, top_trim):
    for record in [stage(all_bins, 1)] + top_trim["stages"]:
        t = record["truth"]
        top = doc(record, "heap top --json")
        assert top == {"arena": t["main_arena"], "address": t["top"], "size": t["top_size"],
                       "end": t["top"] + t["top_size"]}
        # The main heap ends at the program break: sbrk_base + system_mem.
        assert top["end"] == t["sbrk_base"] + t["system_mem"]


def test_top_grows_and_is_trimmed(top_trim):
    """The program's own sbrk(0) readings against the top chunk's end at each checkpoint."""
    ends = {}
    for record in top_trim["stages"]:
        sbrk = {label: int(addr, 16) for label, addr in facts(record, "sbrk")}
        ends[record["stage"]] = doc(record, "heap top --json")["end"]
        if record["stage"] == 2:
            assert ends[2] == sbrk["grown"]
        if record["stage"] == 3:
            assert ends[3] == sbrk["trimmed"]
    assert ends[2] > ends[1] and ends[3] < ends[2]


def test_overview_counts(all_bins):
    record = stage(all_bins, 1)
    t = record["truth"]
    ov = doc(record, "heap --json")
    check_glibc_version(ov["glibc"])
    if CONFIG.symbols and not CONFIG.static:
        assert ov["located_by"] == "debug symbols"
    else:  # libc's debug info is hidden (or, static, there is none): the tool must say how else
        assert ov["located_by"] and ov["located_by"] != "debug symbols"
    assert [a["address"] for a in ov["arenas"]] == [t["main_arena"]]
    chunks = doc(record, "heap chunks --json")["chunks"]
    for kind in ("tcache", "fast", "unsorted", "small", "large"):
        assert ov["counts"][kind] == sum(c["bin"] == kind for c in chunks)
    assert ov["counts"]["in_use"] == sum(c["state"] == "in_use" for c in chunks)
    arena = ov["arenas"][0]
    assert arena["main"] and arena["top"] == t["top"] and arena["system_mem"] == t["system_mem"]
    assert arena["next"] == t["main_arena"]
    assert arena["heaps"] == [{"start": t["sbrk_base"], "end": t["sbrk_base"] + t["system_mem"]}]
    assert doc(record, "heap arenas --json") == {"arenas": ov["arenas"]}


def test_against_malloc_info(all_bins):
    """glibc's own malloc_info(): fast = fastbin chunks; rest = top + every chunk in bins 1..126,
    each counted with its raw size word (PREV_INUSE included), per malloc.c's malloc_info."""
    record = stage(all_bins, 1)
    rows = doc(record, "heap chunks --summary --json")["summary"]
    heap = check_malloc_info(record, rows)
    system = {e.get("type"): int(e.get("size", "")) for e in heap.findall("system")}
    assert system["current"] == doc(record, "heap --json")["arenas"][0]["system_mem"]


def check_malloc_info(record, rows):
    """glibc's malloc_info() totals against our summary rows; returns its <heap> element."""
    heap = ET.fromstring(record["truth"]["malloc_info"]).find("heap")
    assert heap is not None
    totals = {e.get("type"): (int(e.get("count", "")), int(e.get("size", ""))) for e in heap.findall("total")}
    fast = [r for r in rows if r["bin"] == "fast"]
    assert totals.get("fast", (0, 0)) == (sum(r["count"] for r in fast), sum(r["bytes"] for r in fast))  # none: 2.43+
    binned = [r for r in rows if r["bin"] in ("unsorted", "small", "large")]
    top = [r for r in rows if r["state"] == "top"]
    assert totals["rest"] == (1 + sum(r["count"] for r in binned),
                              top[0]["size"] + sum(r["bytes"] + r["count"] for r in binned))
    return heap


def test_summary_totals(all_bins):
    record = stage(all_bins, 1)
    summary = doc(record, "heap chunks --summary --json")
    chunks = doc(record, "heap chunks --json")["chunks"]
    assert sum(r["count"] for r in summary["summary"]) == len(chunks)
    assert sum(r["bytes"] for r in summary["summary"]) == sum(c["size"] for c in chunks)
    t = record["truth"]
    assert sum(r["bytes"] for r in summary["summary"]) == t["system_mem"] - (chunks[0]["address"] - t["sbrk_base"])
    for r in summary["summary"]:
        assert r["bytes"] == r["count"] * r["size"]
        assert r["count"] == sum(1 for c in chunks if (c["state"], c["bin"], c["size"]) ==
                                 (r["state"], r["bin"], r["size"]))


def test_limit(all_bins):
    record = stage(all_bins, 1)
    limited = doc(record, "heap chunks --limit 3 --json")
    assert limited["chunks"] == doc(record, "heap chunks --json")["chunks"][:3]
    text = record["commands"]["heap chunks --limit 3"]["out"]
    assert "stopped after 3 chunks" in text


# -- heap chunk on the samples' own pointers ---------------------------------------------------

def test_chunk_for_each_printed_pointer(all_bins, first_malloc):
    for record in [stage(all_bins, 1)] + first_malloc["stages"]:
        freed = {name for (name,) in facts(record, "free")}
        S = record["truth"]["S"]
        for name, addr, request in facts(record, "ptr"):
            c = doc(record, f"heap chunk {addr} --json")
            p, n = int(addr, 16), int(request)
            assert c["understood_as"] == "user_pointer"
            assert c["address"] == p - 2 * S and c["user_address"] == p
            assert c["size"] == request2size(n, S), (name, n)
            assert c["requests"][0] <= n <= c["requests"][1]
            assert request2size(c["requests"][1], S) == c["size"] and request2size(c["requests"][1] + 1, S) > c["size"]
            assert c["usable_size"] >= n
            assert c["arena"] == record["truth"]["main_arena"]
            if name not in freed:
                assert c["state"] == "in_use", name


def test_chunk_by_chunk_address(all_bins):
    record = stage(all_bins, 1)
    first = doc(record, "heap chunks --json")["chunks"][1]
    gdb = gdb_batch(["break checkpoint", "run > /dev/null", f"heap chunk {first['address']} --json",
                     f"heap chunk {first['address']}"], sample("all_bins"))
    no_traceback(gdb.stdout + gdb.stderr)
    c = json_doc(gdb.stdout)
    assert c["understood_as"] == "chunk" and c["address"] == first["address"]
    assert "understood as a chunk address" in gdb.stdout


def test_malloc10_gives_32_byte_chunk(first_malloc):
    """The learner's question: malloc(10) on x86-64 gives a 32-byte chunk, 24 usable bytes."""
    record = stage(first_malloc, 2)
    (name, addr, request), = [f for f in facts(record, "ptr") if f[0] == "p"]
    c = doc(record, f"heap chunk {addr} --json")
    S = record["truth"]["S"]
    assert (c["size"], c["usable_size"]) == ((32, 24) if S == 8 else (16, 12))
    assert c["requests"] == ([0, 24] if S == 8 else [0, 12])


def test_freed_pointer_is_reused(first_malloc):
    record = stage(first_malloc, 4)
    ptrs = {name: addr for name, addr, _ in facts(record, "ptr")}
    assert ptrs["q"] == ptrs["p"]
    assert doc(record, f"heap chunk {ptrs['q']} --json")["state"] == "in_use"


def test_heap_lives_at_the_program_break(first_malloc):
    record = stage(first_malloc, 2)
    sbrk = {label: int(a, 16) for label, a in facts(record, "sbrk")}
    addrs = {label: int(a, 16) for label, a in facts(record, "addr")}
    heap = doc(record, "heap --json")["arenas"][0]["heaps"][0]
    assert heap["end"] == sbrk["after_first_malloc"]
    if not CONFIG.static:  # a static program's startup already called malloc: its heap began before main
        assert heap["start"] >= sbrk["start"]
    assert addrs["global_bss"] < heap["start"] < addrs["stack"]


# -- before the first malloc -----------------------------------------------------------------

def test_before_first_malloc(first_malloc):
    skip_if_static_startup()
    record = stage(first_malloc, 1)
    assert not record["truth"]["initialised"]
    text = record["commands"]["heap"]
    assert text["ok"] and "not initialised yet" in text["out"]
    assert doc(record, "heap chunks --json")["chunks"] == []
    assert "no chunks" in record["commands"]["heap chunks"]["out"]
    top = record["commands"]["heap top --json"]
    assert not top["ok"] and top["out"].startswith("heap: the heap is not initialised yet")
    assert doc(record, "heap bins --json")["bins"] == []


# -- errors ----------------------------------------------------------------------------------

ERRORS = [
    ("heap", "heap: no process"),
    ("heap chunks --json", "heap: no process"),
]


def one_error_line(gdb_result):
    no_traceback(gdb_result.stdout + gdb_result.stderr)
    # a warning (e.g. "heap: warning: the glibc version is not written in ...") is not an error
    lines = [line for line in gdb_result.stderr.splitlines()
             if line.startswith("heap:") and not line.startswith("heap: warning:")]
    return lines


def test_no_process():
    for command in ["heap", "heap chunks", "heap bins", "heap top", "heap arenas", "heap chunk 0x10"]:
        r = gdb_batch([command], sample("all_bins"))
        lines = one_error_line(r)
        assert len(lines) == 1 and lines[0].startswith("heap: no process;"), (command, r.stderr)
        assert r.returncode != 0


@pytest.mark.parametrize("command, message", [
    ("heap chunk 0x10", "heap: 0x10 is not in any heap of this process;"),
    ("heap bins foo", "heap: unknown bin kind 'foo';"),
    ("heap chunks --bogus", "heap: unknown option '--bogus' for heap chunks;"),
    ("heap chunks --limit", "heap: --limit needs a value;"),
    ("heap chunks --limit x", "heap: --limit wants a number of chunks"),
    ("heap top --arena 0x1234", "heap: 0x1234 is not an arena"),
    ("heap frobnicate", "heap: undefined heap command 'frobnicate';"),
    ("heap chunk", "heap: give a chunk address"),
    ("heap chunk nosuchsymbol", "heap: cannot evaluate 'nosuchsymbol'"),
])
def test_bad_input(command, message):
    r = gdb_batch(["break checkpoint", "run > /dev/null", command], sample("all_bins"))
    lines = one_error_line(r)
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert r.returncode != 0  # gdb -batch reports the failed last command


def test_chunk_inside_a_chunk_shows_that_chunk(all_bins):
    record = stage(all_bins, 1)
    c = doc(record, "heap chunks --json")["chunks"][1]
    inner = c["address"] + 24
    r = gdb_batch(["break checkpoint", "run > /dev/null", f"heap chunk {inner}", f"heap chunk {inner} --json"],
                  sample("all_bins"))
    assert r.returncode == 0, r.stderr
    H = c["user_address"] - c["address"]  # 2 * SIZE_SZ, as the tool printed it
    text, as_json = r.stdout.rsplit("\n{", 1)
    assert f"chunk {c['address']:#x}  ({inner:#x} understood as an address inside the chunk: 0x18 bytes into it" in text
    got = json_doc("{" + as_json)
    assert got["address"] == c["address"] and got["size"] == c["size"]
    assert got["inside"] == {"address": inner, "offset": 24, "user_offset": 24 - H}


# -- help, completion, colour ------------------------------------------------------------------

def test_help_texts():
    r = gdb_batch(["help heap", "help heap chunks", "help heap chunk", "help heap bins", "help heap top",
                   "help heap arenas"])
    for c in registry.SUBCOMMANDS:  # the overview's list comes from the registry
        assert f"  {c.name:<14}  {c.summary}" in r.stdout  # the longest name: heap snapshots
    for usage in ["Usage: heap [", "Usage: heap chunks", "Usage: heap chunk ADDR", "Usage: heap bins",
                  "Usage: heap top", "Usage: heap arenas"]:
        assert usage in r.stdout
    assert "--summary" in r.stdout and "PREV_INUSE" in r.stdout


def test_completion():
    r = gdb_batch(["complete heap ch", "complete heap bins t", "complete heap bins --j", "complete heap chunks --l"])
    lines = set(r.stdout.splitlines())
    assert {"heap chunk", "heap chunks", "heap bins tcache", "heap bins --json", "heap chunks --limit"} <= lines


def test_colour_follows_gdb_style():
    # A height set stands for a terminal (batch mode makes height and width unlimited, as pipe does).
    cmds = ["break checkpoint", "run > /dev/null", "set height 24", "set style enabled on", "heap chunks",
            "heap chunks --json", "set style enabled off", "echo ==OFF==\\n", "heap chunks"]
    r = gdb_batch(cmds, sample("all_bins"))
    on, off = r.stdout.split("==OFF==")
    coloured = [line for line in on.splitlines() if not line.startswith("{")]
    assert any(ANSI.search(line) for line in coloured)
    json_line = next(line for line in on.splitlines() if line.startswith("{"))
    assert not ANSI.search(json_line)
    json_doc(on)
    assert not ANSI.search(off)


def test_text_views_name_what_json_says(all_bins):
    record = stage(all_bins, 1)
    text = record["commands"]["heap chunks"]["out"]
    for c in doc(record, "heap chunks --json")["chunks"]:
        line = next(line for line in text.splitlines() if re.match(rf"0x0*{c['address']:x}\b", line))
        assert f"{c['size']:#x}" in line
        if c["state"] == "free":
            label = "unsorted" if c["bin"] == "unsorted" else f"{c['bin']}[{c['bin_index']}]"
            assert f"free {label}" in line
    bins_text = record["commands"]["heap bins"]["out"]
    for b in doc(record, "heap bins --json")["bins"]:
        assert ("unsorted" if b["kind"] == "unsorted" else f"{b['kind']}[{b['index']}]") in bins_text
        assert all(f"{c:#x}" in bins_text for c in b["chunks"])


def test_no_tracebacks_anywhere(all_bins, first_malloc, top_trim):
    for result in (all_bins, first_malloc, top_trim):
        no_traceback(result["gdb_stderr"])
        for record in result["stages"]:
            for r in record["commands"].values():
                no_traceback(r["out"])


# -- a bigger heap: c_samples/many ------------------------------------------------------------

@pytest.fixture(scope="module")
def many():
    return probe(sample("many"), ["heap chunks --json", "heap chunks", "heap chunks --summary --json",
                                  "heap bins --json", "heap --json"], args=["30000"])


def test_many_text_and_json_agree(many):
    """Thirty thousand chunks: output is streamed in batches, every chunk still gets its line."""
    record = stage(many, 1)
    chunks = doc(record, "heap chunks --json")["chunks"]
    (n, allocated, freed), = facts(record, "many")
    assert len(chunks) >= int(allocated)
    lines = [line for line in record["commands"]["heap chunks"]["out"].splitlines() if line.startswith("0x")]
    assert [int(line.split()[0], 16) for line in lines] == [c["address"] for c in chunks]
    check_chunks_against_truth(record)


def test_many_against_malloc_info(many):
    record = stage(many, 1)
    rows = doc(record, "heap chunks --summary --json")["summary"]
    check_malloc_info(record, rows)
    counts = doc(record, "heap --json")["counts"]
    assert counts["in_use"] == sum(r["count"] for r in rows if r["state"] == "in_use")


# -- threads: every thread's tcache ------------------------------------------------------------

@pytest.fixture(scope="module")
def threads():
    return probe(sample("threads"), ["up", "heap chunks --all-arenas --json", "heap --json", "frame",
                                     "heap bins --json", "heap arenas --json"], thread_tcaches=True,
                 chunk_for_pointers=True, arenas_truth=True)


def test_chunks_in_any_threads_tcache_are_free(threads):
    """The contract: a chunk in any thread's tcache is free, bin tcache, whichever thread is selected."""
    record = stage(threads, 1)
    truth = record["truth"]["thread_tcaches"]
    if "error" in truth:
        pytest.skip(f"no truth for other threads' tcaches on {CONFIG.name}: {truth['error']}")
    in_some_tcache = {c for chunks in truth.values() for c in chunks}
    assert len([t for t in truth.values() if t]) >= 3  # the workers' tcaches hold chunks
    chunks = [c for a in doc(record, "heap chunks --all-arenas --json")["arenas"] for c in a["chunks"]]
    tcache_free = {c["address"] for c in chunks if (c["state"], c["bin"]) == ("free", "tcache")}
    assert tcache_free == in_some_tcache
    # Every pointer a worker freed is in its tcache (requests up to 464 bytes: tcache sizes).
    S = record["truth"]["S"]
    ptrs = {name: int(addr, 16) - 2 * S for name, addr, _ in facts(record, "ptr")}
    freed = {ptrs[name] for (name,) in facts(record, "free")}
    assert freed == in_some_tcache
    assert doc(record, "heap --json")["counts"]["tcache"] == len(in_some_tcache)


def worker_arenas(record):
    """Worker name ("t1") -> the arena its thread is attached to (thread_arena, read by gdb in the
    thread whose LWP the sample printed for that worker)."""
    by_lwp = {t["lwp"]: t["arena"] for t in record["truth"]["threads"].values() if "arena" in t}
    return {name: by_lwp[int(lwp)] for name, lwp in facts(record, "tid")}


def test_thread_arenas_are_listed_in_ring_order(threads):
    """The arena ring as glibc's debug info shows it.  Each worker made an arena of its own while
    glibc's arena limit allowed (8 per core on 64-bit, 2 on 32-bit, counted from the CPUs glibc
    sees), then shared one: the ring holds main_arena and one arena per distinct thread_arena."""
    record = stage(threads, 1)
    arenas = doc(record, "heap arenas --json")["arenas"]
    assert arenas[0]["address"] == record["truth"]["main_arena"] and arenas[0]["main"]
    assert [a["address"] for a in arenas] == [a["address"] for a in record["truth"]["arenas"]]
    attached = set(worker_arenas(record).values())
    assert len(worker_arenas(record)) == 3 and {a["address"] for a in arenas} == attached | {arenas[0]["address"]}
    for a, b in zip(arenas, arenas[1:] + arenas[:1]):
        assert a["next"] == b["address"]
    S = record["truth"]["S"]
    ptrs = [int(addr, 16) - 2 * S for _, addr, _ in facts(record, "ptr")]
    chunks = {c["address"] for a in doc(record, "heap chunks --all-arenas --json")["arenas"] for c in a["chunks"]}
    assert set(ptrs) <= chunks  # every worker chunk is found by walking the thread arenas' heaps


def test_selected_frame_is_kept(threads):
    """Looking at other threads' tcaches switches threads inside gdb: the user's frame stays."""
    record = stage(threads, 1)
    assert record["commands"]["frame"]["out"].startswith("#1 ")


def test_chunk_in_a_thread_arena(threads):
    """heap chunk on a worker's pointer: its arena is its worker's thread_arena, its size
    request2size's, and a freed one sits in a tcache (its worker's)."""
    record = stage(threads, 1)
    S = record["truth"]["S"]
    main = record["truth"]["main_arena"]
    arena_of = worker_arenas(record)
    freed = {name for (name,) in facts(record, "free")}
    for name, addr, request in facts(record, "ptr"):
        c = doc(record, f"heap chunk {addr} --json")
        want = arena_of[name.split("_")[0]]
        assert c["arena"] == want and c["non_main_arena"] == (want != main), name
        assert c["size"] == request2size(int(request), S) and c["understood_as"] == "user_pointer"
        assert (c["state"], c["bin"]) == (("free", "tcache") if name in freed else ("in_use", None)), name
