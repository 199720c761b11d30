"""heap snapshot / heap diff on c_samples/diff.c: the diff between checkpoints is what the
sample printed it did (its pointers, its frees), and top and system memory are what gdb reads
from glibc's debug info (main_arena.top, main_arena.system_mem) at each checkpoint."""

from typing import Dict

import pytest

from tests.gdbrun import CONFIG, doc, facts, gdb_batch, json_docs, no_traceback, probe, sample, tool_text

DIFF = "heap diff --json"


@pytest.fixture(scope="module")
def stages():
    # At each checkpoint: the diff against the last one's snapshot, then this one's snapshot.
    return probe(sample("diff"), [DIFF, "heap diff", "heap snapshot", "heap snapshots --json",
                                  "heap chunks --json"])["stages"]


def ptrs(stages):
    return {name: int(address, 16) for s in stages for name, address, _ in facts(s, "ptr")}


def request2size(request: int, S: int) -> int:
    """malloc.c's request2size by hand: the size field's room, rounded up to 16 (MALLOC_ALIGNMENT
    on x86-64 and i386), at least MINSIZE."""
    return max(4 * S if S == 8 else 16, (request + S + 15) & ~15)


def test_without_a_snapshot_the_diff_is_empty(stages):
    d = doc(stages[0], DIFF)
    t = stages[0]["truth"]
    assert (d["from"], d["to"]) == ("now", "now")
    assert d["appeared"] == d["disappeared"] == d["changed"] == []
    assert d["top"] == {"before": t["top"], "after": t["top"], "size_before": t["top_size"],
                        "size_after": t["top_size"]}
    assert "no snapshot yet" in stages[0]["commands"]["heap diff"]["out"]


def walked(stage) -> Dict[int, int]:
    """Chunk address -> size word, top left out, as gdb walks the heap through glibc's debug info."""
    t = stage["truth"]
    return {a: w for a, w in t["chunks"] if a != t["top"]}


def test_frees_and_a_malloc_between_checkpoints(stages):
    p, S = ptrs(stages), stages[0]["truth"]["S"]
    before, after = stages[0]["truth"], stages[1]["truth"]
    assert [f[0] for f in facts(stages[1], "free")] == ["t", "big"]
    d = doc(stages[1], DIFF)
    assert (d["from"], d["to"], d["arena"]) == ("1", "now", after["main_arena"])
    w1, w2 = walked(stages[0]), walked(stages[1])
    # n, cut from where top was, appeared (glibc 2.42+ also makes its tcache at the first free)
    assert {c["address"] for c in d["appeared"]} == set(w2) - set(w1)
    assert (p["n"] - 2 * S, request2size(5000, S), "in_use") in \
        [(c["address"], c["size"], c["state"]) for c in d["appeared"]]
    assert d["disappeared"] == [] and set(w1) <= set(w2)
    changed = {c["address"]: c for c in d["changed"]}
    assert {p["t"] - 2 * S, p["big"] - 2 * S, p["guard"] - 2 * S} <= set(changed)
    t, big, guard = (changed[p[x] - 2 * S] for x in ("t", "big", "guard"))
    assert (t["before"]["state"], t["after"]["state"], t["after"]["bin"]) == ("in_use", "free", "tcache")
    assert p["t"] in after["tcache"]["chains"][t["after"]["bin_index"]]  # the tcache chain gdb reads
    assert big["after"]["state"] == "free" and big["after"]["bin"] in ("unsorted", "large")
    assert any(p["big"] - 2 * S in chain for chain in after["bins"].values())  # main_arena.bins lists it
    # free(big) cleared guard's P bit: glibc's size words, read through gdb, before and after
    assert w1[p["guard"] - 2 * S] & 1 == 1 and w2[p["guard"] - 2 * S] & 1 == 0
    assert (guard["before"]["prev_inuse"], guard["after"]["prev_inuse"]) == (True, False)
    assert guard["before"]["state"] == guard["after"]["state"] == "in_use"
    # every chunk whose size word changed, as gdb reads them, is in the diff, and no other
    # chunk changed but by its state (t, big: a bin took them)
    resized = {a for a in w1 if w1[a] != w2[a]}
    assert resized <= set(changed) and set(changed) - resized == {p["t"] - 2 * S, p["big"] - 2 * S}
    assert d["top"] == {"before": before["top"], "after": after["top"], "size_before": before["top_size"],
                        "size_after": after["top_size"]}
    assert d["system_mem"] == {"before": before["system_mem"], "after": after["system_mem"]}


def test_a_free_into_top_disappears(stages):
    p, S = ptrs(stages), stages[0]["truth"]["S"]
    before, after = stages[1]["truth"], stages[2]["truth"]
    d = doc(stages[2], DIFF)
    assert d["from"] == "2"
    w2, w3 = walked(stages[1]), walked(stages[2])
    assert [(c["address"], c["size"]) for c in d["disappeared"]] == [(p["n"] - 2 * S, request2size(5000, S))]
    assert {c["address"] for c in d["disappeared"]} == set(w2) - set(w3) and d["appeared"] == d["changed"] == []
    assert after["top"] == p["n"] - 2 * S == d["top"]["after"] and d["top"]["before"] == before["top"]
    assert (d["top"]["size_before"], d["top"]["size_after"]) == (before["top_size"], after["top_size"])
    assert d["system_mem"] == {"before": before["system_mem"], "after": after["system_mem"]}  # trimmed or not


def test_chunks_are_the_objects_of_heap_chunks(stages):
    """The contract: a chunk of the diff is the object `heap chunks --json` gives for it (the
    chunks after the change here, before it at the previous checkpoint)."""
    for k in (1, 2):
        d = doc(stages[k], DIFF)
        now = {c["address"]: c for c in doc(stages[k], "heap chunks --json")["chunks"]}
        then = {c["address"]: c for c in doc(stages[k - 1], "heap chunks --json")["chunks"]}
        assert d["appeared"] or d["disappeared"]
        assert all(now[c["address"]] == c for c in d["appeared"] + [x["after"] for x in d["changed"]])
        assert all(then[c["address"]] == c for c in d["disappeared"] + [x["before"] for x in d["changed"]])


def test_text_names_the_p_bit_and_the_bins(stages):
    p, S = ptrs(stages), stages[0]["truth"]["S"]
    text = tool_text(stages[1]["commands"]["heap diff"]["out"])
    assert f"changed      {p['guard'] - 2 * S:#x}  flags P.. -> ..." in text
    assert f"appeared     {p['n'] - 2 * S:#x}" in text
    assert "tcache[" in text.split("bins", 1)[1]


def test_snapshots_are_listed_with_their_stops(stages):
    listed = doc(stages[2], "heap snapshots --json")["snapshots"]
    assert [s["name"] for s in listed] == ["1", "2", "3"]
    assert [s["when"].split(",")[0] for s in listed] == ["stop 1", "stop 2", "stop 3"]
    # one heap: 6 bytes a chunk, its first chunk's index and address (16), every 256th chunk's address
    assert all(s["arenas"] == 1 and s["bytes"] == 6 * s["chunks"] + 16 + 8 * -(-s["chunks"] // 256) for s in listed)


def test_two_named_snapshots_errors_and_a_new_run():
    r = gdb_batch(["break checkpoint", "run > /dev/null", "heap snapshot before", "continue",
                   "heap snapshot after", "heap diff before after", "heap diff nope", "heap snapshot now",
                   "heap diff a b c", "run > /dev/null", "heap snapshots"], sample("diff"))
    no_traceback(r.stderr)
    out = r.stdout + r.stderr
    assert "before -> after, main arena" in out
    assert "heap: no snapshot named 'nope' (snapshots: before, after); see heap snapshots" in out
    assert "heap: 'now' names the heap as it is; give the snapshot another name" in out
    assert "heap: unexpected argument 'c'" in out
    assert "2 snapshot(s) dropped (before, after)" in out  # the new run replaced the process
    assert "no snapshots: take one with heap snapshot [NAME]" in out


def test_threads_every_arena():
    """arenas.c: four arenas at its checkpoint; a snapshot before the first thread runs sees only
    main_arena, so three arenas appear (each with a null "before")."""
    truth = [] if CONFIG.two_runs else ["output (unsigned long) main_arena.top", "echo \\n",
                                        "output main_arena.system_mem", "echo \\n"]
    r = gdb_batch(["break main", "run > /dev/null", "heap snapshot"] + truth + ["break checkpoint", "continue",
                   "heap diff --all-arenas --json", "heap arenas --json"], sample("arenas"))
    no_traceback(r.stderr)
    diff, arenas = json_docs(r.stdout)
    assert [a["arena"] for a in diff["arenas"]] == [a["address"] for a in arenas["arenas"]]
    fresh = [a for a in diff["arenas"] if a["top"]["before"] is None]
    main = diff["arenas"][0]
    if truth:  # gdb's reading of main_arena at main() (static programs malloc before main)
        top, system_mem = (int(line) for line in r.stdout.splitlines() if line.isdigit())
        assert (main["top"]["before"], main["system_mem"]["before"]) == (top, system_mem)
    assert len(fresh) == 3 and all(a["appeared"] and a["system_mem"]["before"] is None for a in fresh)


def test_free_and_reuse_against_the_tcache_and_fastbins_gdb_reads():
    """reuse.c: free(a0) changes a0 to tcache, malloc(40) takes the same chunk back (the sample
    says so), then the nine frees fill the tcache bin and spill into the fast bin: each chunk's
    bin in the diff is the list gdb finds it on through glibc's debug info."""
    stages = probe(sample("reuse"), [DIFF, "heap snapshot"], last_stage=4)["stages"]
    p, S = ptrs(stages), stages[0]["truth"]["S"]
    a = [p[f"a{i}"] - 2 * S for i in range(9)]
    d2, d3, d4 = (doc(s, DIFF) for s in stages[1:4])
    assert [(c["address"], c["before"]["state"], c["after"]["bin"]) for c in d2["changed"]] == \
        [(a[0], "in_use", "tcache")]
    assert facts(stages[2], "same_as_a0") == [["yes"]] and p["again"] - 2 * S == a[0]
    assert [(c["address"], c["before"]["bin"], c["after"]["state"]) for c in d3["changed"]] == \
        [(a[0], "tcache", "in_use")]
    for k, d in ((1, d2), (2, d3), (3, d4)):  # 2.42+ makes its tcache at the first free: it appears
        w0, w = walked(stages[k - 1]), walked(stages[k])
        assert {c["address"] for c in d["appeared"]} == set(w) - set(w0) and d["disappeared"] == []
    t = stages[3]["truth"]
    tcache = {e - 2 * S for chain in t["tcache"]["chains"] for e in chain}
    fast = {c for entry in (t["fastbins"] or {}).values() for c in entry["chain"]}
    after = {c["address"]: c["after"] for c in d4["changed"]}
    assert sorted(after) == a
    assert {x for x, c in after.items() if c["bin"] == "tcache"} == tcache & set(a)
    assert {x for x, c in after.items() if c["bin"] == "fast"} == fast & set(a)
    assert len(tcache & set(a)) == min(t["tcache_count"], 9)  # the bin holds mp_.tcache_count at most


RECORD = ("python import json; from gdb_heap.commands import snapshot as S; "
          "print(json.dumps({'arenas': {str(a.address): {'gaps': len(a.gaps), 'rows': list(a.rows())} "
          "for a in S.store().snaps['s'].arenas}}))")


def test_a_record_keeps_every_chunk_of_a_thread_arena_of_several_heaps():
    """`arenas big`: a worker's arena of several heaps (the newer one mapped below the older):
    the record's chunks, their addresses from its sizes, marks and gaps, are those heap chunks
    lists, arena by arena, the snapshot taken with the helper and without."""
    for helper_min in ("1", "0"):
        r = gdb_batch(["break checkpoint", "run big > /dev/null", f"set heap helper-min {helper_min}",
                       "heap snapshot s", RECORD, "heap chunks --all-arenas --json"], sample("arenas"))
        no_traceback(r.stdout + r.stderr)
        recorded, listed = json_docs(r.stdout)
        arenas = {a["arena"]: a["chunks"] for a in listed["arenas"]}
        assert set(arenas) == {int(a) for a in recorded["arenas"]}
        for address, record in recorded["arenas"].items():
            rows = [(c["address"], c["size"], c["state"], c["bin"], c["bin_index"]) for c in arenas[int(address)]]
            assert [(a, s & ~7, state, kind, index) for a, s, state, kind, index in record["rows"]] == rows
        assert max(a["gaps"] for a in recorded["arenas"].values()) > 1  # a heap after the first: a gap
