"""`heap try-free` and `heap try-malloc` proven by letting glibc do it (c_samples/next_step.c).

Each stage of the sample sets up a situation and stops at checkpoint 1, where the tool predicts
the one free() or malloc() the program makes next; the program then makes it.  The truth is
what glibc did: the message it printed on stderr and the SIGABRT, or the pointer malloc
returned (the sample prints it), and the bins and top read through glibc's debug info at
checkpoint 2 (tests/gdb_probe.py), compared with the same reading at checkpoint 1.  Nothing
expected is computed with gdb_heap's code.

Also corrupt.c's stages whose carrying on is one call: glibc's abort there is the prediction's.
"""

import os
import re
import tempfile
from collections import Counter
from typing import Any, Dict, List

import pytest

from tests.gdbrun import facts, host_glibc, json_doc, no_traceback, probe, sample, version_tuple

GLIBC = version_tuple(host_glibc())
FREE = "heap try-free target --json"
MALLOC = "heap try-malloc request --json"
CALLOC = "heap try-malloc request --calloc --json"
FREE_STAGES = ["free_tcache", "free_fast", "free_small", "free_unsorted", "free_merge_back", "free_merge_forward",
               "free_merge_both", "free_into_top", "free_trim", "free_munmap", "double_free_tcache",
               "double_free_fast", "free_misaligned", "free_top", "free_fake_tcache"]
FAKE = "heap fake-chunks &fake[6] --json"  # 4 words into the fake chunk's user data
MALLOC_STAGES = ["malloc_tcache", "malloc_fast", "malloc_small", "malloc_unsorted_exact", "malloc_sort_then_top",
                 "malloc_large_split", "malloc_binmap_small", "malloc_last_remainder", "malloc_top", "malloc_mmap",
                 "malloc_consolidate", "malloc_consolidate_many", "malloc_unsorted_to_tcache", "calloc_skips_tcache",
                 "realloc_shrink", "realloc_into_top", "realloc_over_next", "realloc_move"]
REALLOC = "heap try-malloc request --realloc target --json"


def command_for(stage: str) -> str:
    if stage.startswith("realloc"):
        return REALLOC
    return CALLOC if stage.startswith("calloc") else MALLOC if stage.startswith("malloc") else FREE


@pytest.fixture(scope="module", params=FREE_STAGES + MALLOC_STAGES)
def run(request):
    """One stage: the prediction at checkpoint 1, the truth at checkpoints 1 and 2, what glibc
    printed on stderr and how the program ended."""
    stage = request.param
    command = command_for(stage)
    with tempfile.TemporaryDirectory(prefix="gdb_heap_next.") as tmp:
        stderr_file = os.path.join(tmp, "stderr")
        commands = [command] + ([FAKE] if stage == "free_fake_tcache" else [])
        record = probe(sample("next_step"), commands, [stage, "2>", stderr_file])
        with open(stderr_file) as f:
            printed = f.read()
    no_traceback(record["gdb_stderr"])
    stages = record["stages"]
    assert stages and stages[0]["stage"] == 1, f"{stage}: the sample did not stop at checkpoint 1"
    r = stages[0]["commands"][command]
    assert r["ok"], f"{stage}: {command} failed: {r['out']}"
    return {"stage": stage, "prediction": json_doc(r["out"]), "before": stages[0],
            "after": stages[1] if len(stages) > 1 else None, "printed": printed, "end": record["end"]}


def test_fake_chunks_lists_the_fake_chunk_glibc_takes(run):
    """The fake chunk the sample writes (size 8 * SIZE_SZ) is a tcache fit at its address; glibc's
    free then puts it in that tcache bin (test_free_puts_the_chunk_where_predicted checks the
    bin through debug info)."""
    if run["stage"] != "free_fake_tcache":
        pytest.skip("the fake chunk stage only")
    before = run["before"]
    S = before["truth"]["S"]
    fake = int(next(f for f in facts(before, "addr") if f[0] == "fake")[1], 16)
    r = before["commands"][FAKE]
    assert r["ok"], r["out"]
    found = {c["chunk"]: c for c in json_doc(r["out"])["candidates"]}
    index = (8 * S - 4 * S) // 16  # csize2tidx: (size - MINSIZE) / MALLOC_ALIGNMENT
    assert fake in found, f"{fake:#x} not among {sorted(hex(c) for c in found)}"
    assert f"tcache[{index}]" in found[fake]["fits"] and found[fake]["size"] == 8 * S
    assert run["prediction"]["to"] == f"tcache[{index}]"
    after = run["after"]["truth"]
    assert tcache_chains(after)[index][0] == fake + 2 * S


def fact(record: Dict[str, Any], kind: str) -> List[str]:
    found = facts(record, kind)
    assert found, f"no '@ {kind}' line"
    return found[-1]


def regular(truth: Dict[str, Any]) -> Dict[int, List[int]]:
    return {int(k): v for k, v in truth["bins"].items()}


def tcache_chains(truth: Dict[str, Any]) -> List[List[int]]:
    chains: List[List[int]] = truth["tcache"].get("chains", [])
    return chains


def fast_head(truth: Dict[str, Any], index: int) -> int:
    return int((truth["fastbins"] or {}).get(str(index), {}).get("head", 0))


def test_abort_or_not_is_what_glibc_did(run):
    """The predicted abort is the line glibc printed before SIGABRT; no abort, a clean run."""
    pred, printed, end = run["prediction"], run["printed"], run["end"]
    if printed:
        assert printed.endswith("\n") and printed.count("\n") == 1, f"{run['stage']}: glibc printed {printed!r}"
        assert end == {"signal": "SIGABRT"}, f"{run['stage']}: glibc printed {printed!r}, then {end}"
        assert pred["aborts"] == printed[:-1], (
            f"{run['stage']}: predicted {pred['aborts']!r}, glibc printed {printed!r}")
        assert pred["failed_check"]
    else:
        assert end == {"exit_code": 0}, f"{run['stage']}: the program ended {end}"
        assert pred["aborts"] is None, f"{run['stage']}: predicted {pred['aborts']!r}, glibc went on"
        assert run["after"] is not None
    assert pred["crashes"] is None and not pred["gave_up"] and pred["steps"]


def test_malloc_returns_the_predicted_chunk(run):
    stage, pred = run["stage"], run["prediction"]
    if command_for(stage) == FREE or pred["aborts"]:
        pytest.skip("not a malloc that returns")
    before, after = run["before"]["truth"], run["after"]
    result = int(fact(after, "result")[0], 16)
    S = before["S"]
    if pred["from"] == "mmap":
        assert pred["chunk"] is None
        assert int(fact(after, "size_field")[0], 16) & 2, f"{stage}: {result:#x} is not an mmapped chunk"
        assert after["truth"]["n_mmaps"] == before["n_mmaps"] + 1
        return
    assert pred["user_address"] == result, f"{stage}: predicted {pred['user_address']:#x}, malloc returned {result:#x}"
    chunk = result - 2 * S
    source, index = pred["from"], pred["bin_index"]
    # Where that chunk was at checkpoint 1, by glibc's debug info.
    if source == "tcache" and not pred["side_effects"]:
        assert tcache_chains(before)[index][0] == result
    elif source == "fast":
        assert fast_head(before, index) == chunk
    elif source == "small":
        assert regular(before)[index][-1] == chunk
    elif source in ("unsorted", "last_remainder"):
        assert chunk in regular(before)[1]
    elif source == "large":
        assert chunk in regular(before)[index]
    elif source in ("in place", "next"):  # realloc kept the chunk
        assert result == int(fact(run["before"], "addr")[1], 16)
    if pred["top_after"] is not None:
        assert after["truth"]["top"] == pred["top_after"], f"{stage}: top is {after['truth']['top']:#x}"


SORTED = re.compile(r"unsorted chunk (0x[0-9a-f]+) \(size (0x[0-9a-f]+)\) sorted into (?:small|large)\[(\d+)\]$")


def test_consolidating_many_fast_chunks(run):
    """malloc_consolidate over tens of thousands of fast chunks (next_step.c's consolidate_many):
    more than the prediction's base budget of 2**18 words covers (each fast chunk costs at
    least 11: its size, fd, the next chunk's size, the one after's, top, the unsorted head;
    five header and link writes).  Every chunk the prediction says malloc sorted is in that bin
    afterwards with that size, made of one chunk or of two neighbours at checkpoint 1: a fast
    chunk merged backwards or forwards with a fast chunk (glibc takes the fast bins in index
    order, so the lower bin's chunk is consolidated first), or a fast chunk merged backwards
    into an unsorted chunk; the last fast chunk, beside top, merged into top, which the
    request is then cut from."""
    if run["stage"] != "malloc_consolidate_many":
        pytest.skip("the many fast chunks stage only")
    if GLIBC >= (2, 43):
        pytest.skip("glibc 2.43 removed the fastbins")
    pred, before, after = run["prediction"], run["before"]["truth"], run["after"]["truth"]
    S = before["S"]
    chains = {int(i): entry["chain"] for i, entry in before["fastbins"].items()}
    in_fast = {c: i for i, chain in chains.items() for c in chain}
    # Four fast requests, four chunk sizes on x86-64 (0x20 0x30 0x40 0x50) but three on i386
    # (0x10 0x20 0x20 0x30): the first tcache_count frees of each size filled its tcache bin.
    sizes = 4 if S == 8 else 3
    assert len([i for i, chain in chains.items() if chain]) == sizes
    assert len(in_fast) == int(fact(run["before"], "freed_fast")[0]) - sizes * before["tcache_count"]
    assert len(in_fast) * 11 > 1 << 18
    assert not pred["gave_up"] and pred["aborts"] is None
    assert any(e.startswith("malloc_consolidate") for e in pred["side_effects"])
    sizes_before = {c: s & ~7 for c, s in before["chunks"]}
    sizes_after = {c: s & ~7 for c, s in after["chunks"]}
    last = int(next(f for f in facts(run["before"], "ptr") if f[0] == "last")[1], 16) - 2 * S
    assert last in in_fast and last + sizes_before[last] == before["top"]
    assert pred["from"] == "top" and pred["chunk"] == last  # merged into top, then cut from it
    unsorted_before, bins_after = set(regular(before)[1]), regular(after)
    kinds: Counter[str] = Counter()
    for effect in pred["side_effects"]:
        m = SORTED.match(effect)
        if m is None:
            continue
        chunk, size, index = int(m[1], 16), int(m[2], 16), int(m[3])
        assert chunk in bins_after[index] and sizes_after[chunk] == size, effect
        own = sizes_before[chunk]
        if size == own:
            kinds["alone"] += 1
            continue
        neighbour = chunk + own
        assert size == own + sizes_before[neighbour] and neighbour in in_fast, effect
        if chunk in unsorted_before:
            kinds["backwards into an unsorted chunk"] += 1
        else:
            kinds["backwards" if in_fast[chunk] < in_fast[neighbour] else "forwards"] += 1
    assert set(kinds) == {"alone", "backwards into an unsorted chunk", "backwards", "forwards"}, kinds


def test_free_puts_the_chunk_where_predicted(run):
    stage, pred = run["stage"], run["prediction"]
    if command_for(stage) != FREE or pred["aborts"]:
        pytest.skip("not a free that returns")
    before, after = run["before"]["truth"], run["after"]["truth"]
    target = int(fact(run["before"], "addr")[1], 16)
    S = before["S"]
    chunk = target - 2 * S
    assert pred["chunk"] == chunk and pred["address"] == target
    merged = min([chunk] + [m for m in pred["merged_with"] if m != before["top"]])
    to, index = pred["to"], pred["bin_index"]
    if to.startswith("tcache"):
        assert tcache_chains(after)[index][0] == target
    elif to.startswith("fast"):
        assert fast_head(after, index) == chunk
    elif to == "unsorted":
        assert regular(after)[1][0] == merged
    elif to.startswith("small"):
        assert regular(after)[index][0] == merged
    elif to == "top":
        assert after["top"] == merged
    elif to == "munmap":
        assert after["n_mmaps"] == before["n_mmaps"] - 1
    else:
        raise AssertionError(f"{stage}: unexpected destination {to}")
    listed = {c for chain in regular(before).values() for c in chain}
    for m in pred["merged_with"]:
        assert m in listed or m == before["top"], f"{stage}: merged with {m:#x}, which was not free"
    if pred["top_after"] is not None:
        assert after["top"] == pred["top_after"]
    sbrk_before = int(next(f for f in facts(run["after"], "sbrk") if f[0] == "before")[1], 16)
    sbrk_after = int(next(f for f in facts(run["after"], "sbrk") if f[0] == "after")[1], 16)
    assert pred["trimmed"] == sbrk_before - sbrk_after, f"{stage}: the break moved {sbrk_before - sbrk_after:#x}"


# -- corrupt.c: the stages whose carrying on is one call --------------------------------------

CORRUPT_FREE = ["overflow", "overlap", "invalid_size"]  # carry on: free(victim)
CORRUPT_MALLOC = ["top_size", "unsorted_bk", "unsorted_prev_size", "unsorted_prev_inuse", "large_bk",
                  "consolidate_size"]  # carry on: malloc(SORT_REQUEST = 0x1000), except:
# large_bk's carrying on asks for the damaged chunk's own size (corrupt.c's LARGE_A_REQUEST), so that
# _int_malloc takes it out of its large bin through unlink_chunk.
MALLOC_REQUEST = {"large_bk": "0x440 - sizeof(size_t)"}
FASTBIN_ONLY = {"consolidate_size"}


@pytest.mark.parametrize("stage", CORRUPT_FREE + CORRUPT_MALLOC)
def test_corrupt_first_call_is_predicted(stage):
    if stage in FASTBIN_ONLY and GLIBC >= (2, 43):
        pytest.skip("glibc 2.43 removed the fastbins")
    request = MALLOC_REQUEST.get(stage, "0x1000")
    command = "heap try-free victim --json" if stage in CORRUPT_FREE else f"heap try-malloc {request} --json"
    with tempfile.TemporaryDirectory(prefix="gdb_heap_corrupt_next.") as tmp:
        stderr_file = os.path.join(tmp, "stderr")
        record = probe(sample("corrupt"), [command], [stage, "2>", stderr_file], truth=False)
        with open(stderr_file) as f:
            printed = f.read()
    r = record["stages"][0]["commands"][command]
    assert r["ok"], r["out"]
    pred = json_doc(r["out"])
    if printed:
        assert record["end"] == {"signal": "SIGABRT"}
        assert pred["aborts"] == printed.strip(), f"{stage}: predicted {pred['aborts']!r}, glibc printed {printed!r}"
    else:
        assert pred["aborts"] is None, f"{stage}: predicted {pred['aborts']!r}, glibc went on"
