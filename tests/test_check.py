"""Integration tests of `heap check` and of every command on corrupted heaps (c_samples/corrupt.c),
and the proof that the commands only read the inferior.

The truth is the sample's own word: it prints the address of the chunk its damage touched
("@ addr damaged addr"), the fake chunk it links to, the other chunk involved and sizeof(size_t);
the expected words are what the damage is (by hand, from the sample's source and SIZE_SZ).  The
abort message `heap check` predicts is checked against glibc itself: after the checkpoint the
sample carries on with the malloc or free the damage breaks, and glibc prints its message on the
program's stderr and raises SIGABRT (or, where glibc has no check for the damage, the program
exits cleanly and the tool must predict no abort).
"""

import json
import os
import re
import tempfile
from typing import Dict

import pytest

from gdb_heap import registry
from tests.gdbrun import (CONFIG, facts, gdb_batch, host_glibc, json_doc, no_traceback, probe, sample,
    skip_if_static_startup, version_tuple)

GLIBC = version_tuple(host_glibc())
SAFE_LINKING = GLIBC >= (2, 32)
FASTBINS = GLIBC < (2, 43)  # glibc 2.43 removed the fastbins
CHECK = "heap check --json"
# Every command in every way the registry lists (`victim`: the damaged chunk's user pointer).
COMMANDS = registry.every_invocation("victim")
assert CHECK in COMMANDS and "heap check" in COMMANDS
# stage -> the words the problem at the damaged chunk says.  "{other}" and "{fake}" stand for the
# sample's printed addresses, the sizes for what the damage wrote, by SIZE_SZ (sizes()). The
# small stages' chunks are MINSIZE: tcache[0] and fast[0] everywhere; the large ones 0x500
# (0x440 for large_bk), past the tcache, in the unsorted bin or, sorted, a large bin.
STAGES = {
    "overflow": ["{overflowed:#x}", "runs"],
    "overlap": ["size {grown:#x}", "contains {other:#x}", "tcache[0]", "overlapping"],
    "uaf_tcache": ["tcache[0]", "links to {fake:#x}", "outside any heap"],
    "uaf_tcache_raw": ["tcache[0]"],
    "uaf_tcache_stack": ["tcache[0]", "links to {stackfake:#x}", "outside any heap"],
    "overflow_far": ["invalid size {bad:#x}", "resumes at"],  # past the overflow the walk skipped
    "uaf_fast": ["fast[0]", "links to {fake:#x}", "outside the arena's heaps"],
    "uaf_fast_raw": ["fast[0]"],
    "uaf_fast_raw_threads": ["fast[0]"],  # not SINGLE_THREAD_P: REMOVE_FB meets the link first
    "double_free": ["fast[0]" if FASTBINS else "tcache[0]", "links back to {other:#x}", "loop", "twice"],
    "tcache_cycle": ["tcache[0]", "links back to {other:#x}", "loop"],
    "top_size": ["top chunk", "size {all_ones:#x}", "system_mem"],
    "smallbin_bk": ["small[", "bk {fake:#x}"],
    "smallbin_stash_bk": ["small[", "bk {fake:#x}"],
    "invalid_size": ["invalid size {bad:#x}"],
    "zero_size": ["invalid size 0x0"],
    "fast_size": ["fast[0]", "has size {two_minsize:#x}"],
    "fast_invalid_size": ["fast[0]", "has size {bad:#x}"],
    "consolidate_size": ["fast[0]", "has size {bad:#x}"],
    "unsorted_bk": ["unsorted", "bk {fake:#x}"],
    "unsorted_size": ["unsorted", "has size {huge:#x}", "system_mem"],
    "unsorted_prev_size": ["unsorted", "prev_size is 0x0"],
    "unsorted_prev_inuse": ["unsorted", "PREV_INUSE set"],
    "large_prev_size": ["large[", "prev_size is 0x0"],
    "large_nextsize": ["large[", "fd_nextsize {fake:#x}"],
    "large_bk": ["large[", "bk {fake:#x}"],
    "large_bk_sort": ["large[", "bk {fake:#x}"],
    "prev_inuse": ["PREV_INUSE clear", "{other:#x}", "in use"],
    "tcache_key": ["tcache", "has key", "not the tcache key"],
    "non_main_arena": ["NON_MAIN_ARENA", "main arena"],
}
# Stages whose carry-on takes another path of glibc than the one the problem's glibc_abort
# documents (malloc taking the chunk out of its bin): the path's name in the problem's other_paths.
OTHER_PATH = {"consolidate_size": "malloc_consolidate", "large_bk_sort": "sorting a chunk into its large bin"}
# Stages whose damage is a size below MINSIZE (the sample wrote 8 or 0): the heap walk cannot go
# past that chunk, so an address inside the chunk after it in memory is refused cleanly.
WALK_BROKEN = {"invalid_size", "zero_size", "fast_invalid_size", "consolidate_size"}
if not SAFE_LINKING:  # without safe-linking, a raw link is a valid link
    STAGES["uaf_tcache_raw"] = STAGES["uaf_tcache"]
    STAGES["uaf_fast_raw"] = STAGES["uaf_fast"]
    STAGES["uaf_fast_raw_threads"] = STAGES["uaf_fast"]
# their tcache equivalents are uaf_tcache and uaf_tcache_raw; the fastbin's size checks have none
FASTBIN_ONLY = {"uaf_fast": "uaf_tcache", "uaf_fast_raw": "uaf_tcache_raw", "uaf_fast_raw_threads": None,
                "fast_size": None, "fast_invalid_size": None, "consolidate_size": None}
def sizes(S: int) -> Dict[str, int]:
    """The size fields the damage wrote, as the tool shows them (flag bits cleared): the overflow's
    "AAAA..." word, the grown chunk's three MINSIZE chunks (MINSIZE = 4 * SIZE_SZ on x86-64 and
    i386), the top chunk's -1, the fastbin chunk's two MINSIZE, BAD_SIZE's 8, HUGE_SIZE's top
    bit but one."""
    return {"overflowed": int.from_bytes(b"A" * S, "little") & ~7, "grown": 3 * 4 * S, "all_ones": (1 << 8 * S) - 8,
            "two_minsize": 2 * 4 * S, "bad": 8, "huge": 1 << (8 * S - 2)}


@pytest.fixture(scope="module", params=sorted(STAGES))
def corrupted(request):
    """One stage: the tool's record at the checkpoint, what glibc printed on the program's stderr
    once it carried on, and how the program ended."""
    stage = request.param
    if stage in FASTBIN_ONLY and not FASTBINS:
        equivalent = FASTBIN_ONLY[stage]
        pytest.skip(f"{stage}: glibc 2.43 removed fastbins (this is {host_glibc()})"
                    + (f"; {equivalent} tests the tcache" if equivalent else ""))
    with tempfile.TemporaryDirectory(prefix="gdb_heap_corrupt.") as tmp:
        stderr_file = os.path.join(tmp, "stderr")
        record = probe(sample("corrupt"), COMMANDS, [stage, "2>", stderr_file], truth=False)
        with open(stderr_file) as f:
            printed = f.read()
    assert len(record["stages"]) == 1, f"{stage}: the sample did not stop at its checkpoint"
    return stage, record["stages"][0], record["gdb_stderr"], printed, record["end"]


def addr(stage_record, label):
    return next(int(f[1], 16) for f in facts(stage_record, "addr") if f[0] == label)


def damaged_problem(stage, rec):
    """The problem `heap check` reports at the damaged chunk with the stage's words."""
    words = STAGES[stage]
    damaged = addr(rec, "damaged")
    known = {label: addr(rec, label) for label in ("fake", "other", "stackfake")
             if any(f[0] == label for f in facts(rec, "addr"))}
    known.update(sizes(int(facts(rec, "size_t")[0][0])))
    problems = json_doc(rec["commands"][CHECK]["out"])["problems"]
    here = [p for p in problems if p["address"] == damaged]
    assert here, f"{stage}: no problem at {damaged:#x}: {problems}"
    want = [w.format(**known) for w in words]
    hit = [p for p in here if all(w in p["message"] for w in want)]
    assert hit, f"{stage}: no problem at {damaged:#x} says {want}: {here}"
    return hit[0]


def test_check_names_the_damaged_chunk(corrupted):
    stage, rec, _, _, _ = corrupted
    damaged_problem(stage, rec)


def test_predicted_abort_is_what_glibc_prints(corrupted):
    """The abort `heap check` predicts at the damaged chunk is the line glibc printed when the
    program carried on (malloc_printerr: the message and a newline on stderr, then SIGABRT); no
    prediction where the program went on to exit cleanly, or crashed without a message (then the
    problem says so).  Where the carry-on takes another path (OTHER_PATH), the prediction for that
    path is judged."""
    stage, rec, _, printed, end = corrupted
    problem = damaged_problem(stage, rec)
    predicted = problem["glibc_abort"]
    if stage in OTHER_PATH:
        paths = {p["path"]: p["glibc_abort"] for p in problem["other_paths"]}
        assert OTHER_PATH[stage] in paths, f"{stage}: no prediction for {OTHER_PATH[stage]}: {problem}"
        predicted = paths[OTHER_PATH[stage]]
    if end == {"signal": "SIGSEGV"} and not printed:
        assert predicted is None and "SIGSEGV" in problem["message"], f"{stage}: glibc crashed: {problem}"
        return
    if printed:
        assert printed.endswith("\n") and printed.count("\n") == 1, f"{stage}: glibc printed {printed!r}"
        assert end == {"signal": "SIGABRT"}, f"{stage}: glibc printed {printed!r}, then the program ended {end}"
    else:
        assert end == {"exit_code": 0}, f"{stage}: the program ended {end} without a message from glibc"
    glibc = printed[:-1] or None
    assert predicted == glibc, f"{stage}: heap check predicts {predicted!r}, glibc printed {glibc!r}"


def test_every_command_stops_cleanly(corrupted):
    stage, rec, stderr, _, _ = corrupted
    no_traceback(stderr)
    for command in COMMANDS:
        r = rec["commands"][command]
        no_traceback(r["out"])
        assert "internal error" not in r["out"], f"{stage}: {command}: {r['out']}"
        if stage in WALK_BROKEN and command.startswith("heap chunk (char *)victim + 3") and not r["ok"]:
            assert r["out"].startswith("heap: ") and "\n" not in r["out"].strip(), (stage, command, r["out"])
            assert "after the walk broke at chunk" in r["out"], (stage, command, r["out"])
        elif command.endswith("--json"):
            assert r["ok"], f"{stage}: {command} failed: {r['out']}"
            json_doc(r["out"])
        elif not r["ok"]:  # a clean failure is one `heap:` line
            assert r["out"].startswith("heap: ") and "\n" not in r["out"].strip(), (stage, command, r["out"])
    assert not rec["commands"]["heap check"]["ok"]  # problems found: an error
    assert "problem" in rec["commands"]["heap check"]["out"]
    # Where a command lists problems, the damaged chunk's walk problem is among them (a walk
    # broken by a size), or the command shows the chain it cut.
    if stage == "overflow":
        for command in ("heap chunks --json", "heap chunks --all-arenas --json"):
            out = json_doc(rec["commands"][command]["out"])
            doc = out["arenas"][0] if "arenas" in out else out
            assert addr(rec, "damaged") in [p["address"] for p in doc["problems"]]


def test_tcache_key_is_glibcs():
    """The key heap check holds the tcache entries to is glibc's: the key field glibc's free()
    wrote into an intact entry (the sample prints it) and, with libc's symbols, gdb's own reading
    of tcache_key (2.34+; before, the key is the tcache struct's address).  Only the entry whose
    key the sample overwrote is blamed, not the two intact ones."""
    # tcache_key is a uintptr_t: read through its address, since a static program's libc.a has
    # the symbol but no DWARF type for it
    read_key = "p/x *(unsigned long *)&tcache_key"
    rec = probe(sample("corrupt"), [CHECK, read_key], ["tcache_key"], truth=False)["stages"][0]
    key = addr(rec, "key")
    if CONFIG.symbols and GLIBC >= (2, 34):
        printed = re.search(r"= (0x[0-9a-f]+)", rec["commands"][read_key]["out"])
        assert printed and int(printed.group(1), 16) == key, rec["commands"][read_key]
    keyed = [p for p in json_doc(rec["commands"][CHECK]["out"])["problems"] if "has key" in p["message"]]
    assert [p["address"] for p in keyed] == [addr(rec, "damaged")], keyed
    assert f"not the tcache key {key:#x}" in keyed[0]["message"]


def test_batch_exit_status_gates_on_problems():
    bad = gdb_batch(["break checkpoint", "run top_size > /dev/null", "heap check"], sample("corrupt"))
    assert bad.returncode != 0
    assert "heap: 1 problem found in the heap" in bad.stderr
    assert "malloc(): corrupted top size" in bad.stdout
    as_json = gdb_batch(["break checkpoint", "run top_size > /dev/null", "heap check --json"], sample("corrupt"))
    assert as_json.returncode == 0
    assert len(json_doc(as_json.stdout)["problems"]) == 1


@pytest.mark.parametrize("program", ["all_bins", "threads", "many"])
def test_healthy_heaps_have_no_problems(program):
    good = gdb_batch(["break checkpoint", "run > /dev/null", "heap check --all-arenas --json", "heap check"],
                     sample(program))
    no_traceback(good.stdout + good.stderr)
    assert good.returncode == 0, good.stderr
    docs = json_doc(good.stdout)["arenas"]
    assert docs and all(d["problems"] == [] for d in docs)
    assert "no problems found" in good.stdout


def test_check_before_the_first_malloc():
    skip_if_static_startup()
    r = gdb_batch(["break checkpoint", "run > /dev/null", "heap check --json", "heap check"], sample("first_malloc"))
    assert r.returncode == 0, r.stderr
    assert '"problems": []' in r.stdout
    assert "nothing to check" in r.stdout


def test_help_and_completion():
    r = gdb_batch(["help heap check", "complete heap check --a", "complete heap ch"])
    assert ("Usage: heap check [--json [--output FILE]] [--strict] [--arena ADDR |\n"
            "            --all-arenas]") in r.stdout
    assert "the message glibc would abort with" in r.stdout
    assert "heap check --all-arenas" in r.stdout and "heap check --arena" in r.stdout
    assert "heap check" in r.stdout.splitlines()


# -- read-only proof -------------------------------------------------------------------------

READ_ONLY = r'''
import hashlib, json, re
import gdb

def writable():
    """The process's writable mappings, from the kernel's /proc/PID/maps (gdb 10's `info proc
    mappings` shows no permissions)."""
    spans = []
    with open(f"/proc/{gdb.selected_inferior().pid}/maps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            if m and "w" in m.group(3):
                spans.append((int(m.group(1), 16), int(m.group(2), 16)))
    return spans

PAGE = 4096

def pieces(a, b):
    """The span's bytes, halved down to pages where a read fails (None: unreadable): from glibc 2.43
    a thread stack's guard page sits inside its rw-p mapping (a madvise guard region), and no read
    reaches it."""
    try:
        return [(a, bytes(gdb.selected_inferior().read_memory(a, b - a)))]
    except gdb.MemoryError:
        if b - a <= PAGE:
            return [(a, None)]
        mid = a + (b - a) // PAGE // 2 * PAGE
        return pieces(a, mid) + pieces(mid, b)

def digest(spans):
    return {f"{a:#x}": hashlib.sha256(repr(pieces(a, b)).encode()).hexdigest() for a, b in spans}

calls, writes = [], []
gdb.events.inferior_call.connect(lambda e: calls.append(type(e).__name__))
gdb.events.memory_changed.connect(lambda e: writes.append(e.address))
allocator = [gdb.Breakpoint(f, internal=True) for f in ("malloc", "free", "calloc", "realloc")]
spans = writable()
before = digest(spans)
hits_before = [b.hit_count for b in allocator]
results = {}
for command in COMMANDS:
    try:
        gdb.execute(command, to_string=True)
        results[command] = True
    except gdb.error as e:
        results[command] = str(e)
after = digest(spans)
print("READ_ONLY " + json.dumps({"spans": len(spans), "same": before == after,
      "changed": [k for k in before if before[k] != after.get(k)], "calls": calls, "writes": writes,
      "hits": [b.hit_count for b in allocator], "hits_before": hits_before, "results": results}))
'''


@pytest.mark.parametrize("program, args", [("all_bins", ""), ("threads", ""), ("corrupt", "smallbin_bk"),
                                           ("corrupt", "double_free")])
def test_commands_only_read_the_inferior(program, args):
    # A pointer malloc returned, for heap chunk: corrupt's victim; all_bins' mi_file, the FILE
    # sample.h's mi_open mallocs (threads.c opens none: heap chunk is left out there).
    commands = registry.every_invocation({"corrupt": "victim", "all_bins": "mi_file"}.get(program))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(f"COMMANDS = {commands!r}\n" + READ_ONLY)
        script = f.name
    try:
        r = gdb_batch(["break checkpoint", f"run {args} > /dev/null", f"source {script}"], sample(program))
    finally:
        os.unlink(script)
    no_traceback(r.stderr)
    line = next(line for line in r.stdout.splitlines() if line.startswith("READ_ONLY "))
    result = json.loads(line[len("READ_ONLY "):])
    assert result["spans"] >= 3  # the program's data, libc's data, heap, stack at least
    assert result["same"], f"memory changed in {result['changed']}"
    assert result["calls"] == [] and result["writes"] == []
    assert result["hits"] == result["hits_before"]
    ok = [c for c, v in result["results"].items() if v is True]
    failed = {c: v for c, v in result["results"].items() if v is not True}
    assert len(ok) + len(failed) == len(commands)
    # heap check (text) ends with an error when it finds problems: on the corrupt sample only
    assert set(failed) <= ({"heap check", "heap check --all-arenas"} if program == "corrupt" else set()), failed

