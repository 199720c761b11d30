"""heap trace on live programs: the calls recorded and why, checked against outside truth.

The truth: the pointers and frees the samples print (c_samples/trace_walk.c, threads.c), glibc's
own state read through gdb's debug info at trace_walk's checkpoint after every step
(main_arena.top, fastbinsY, the unsorted bin, tcache->counts, mp_.n_mmaps, system_mem), the
sample's source lines for the callers, and hand arithmetic on chunk sizes (x86-64: a request
of n bytes is a chunk of (n + 8) rounded up to 16, at least 32).
"""

import json
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from tests.gdbrun import (CONFIG, EMPTY_DEBUG_DIR, ROOT, gdb_batch, host_glibc, json_doc, no_traceback, sample,
    version_tuple)

HOST = pytest.mark.skipif(CONFIG.glibc_dir is not None or CONFIG.static or not CONFIG.symbols,
                          reason="the truth is read through the host libc's debug info")

FASTBINS = version_tuple(host_glibc()) < (2, 43)

# In gdb: stop at every checkpoint of trace_walk, start the trace at the first, read glibc's
# state at each (through its debug info: the truth), and print it and the trace at the end.
WALK = r'''
import gdb, json
def value(expression):
    try:
        return int(gdb.parse_and_eval(expression))
    except gdb.error:
        return None
def truth():
    return {"top": value("(unsigned long)main_arena.top"), "fast0": value("(unsigned long)main_arena.fastbinsY[0]"),
            "unsorted": value("(unsigned long)main_arena.bins[0]"),
            "unsorted_size": value("((unsigned long *)main_arena.bins[0])[1] & ~7"),
            "count0": value("tcache->counts[0]"), "entry0": value("(unsigned long)tcache->entries[0]"),
            "n_mmaps": value("mp_.n_mmaps"), "system_mem": value("main_arena.system_mem"),
            "sbrk_base": value("(unsigned long)mp_.sbrk_base")}
def tls_error():
    """None when gdb reads libc's thread-local `tcache`; else gdb's reason (no TLS support here)."""
    try:
        gdb.parse_and_eval("&tcache")
        return None
    except gdb.error as e:
        return str(e)
def internal():
    text = gdb.execute("maint info breakpoints", to_string=True)
    return len([line for line in text.splitlines() if re.match(r"^-\d+", line)])
import re
gdb.execute("break checkpoint")
gdb.execute(f"run > {OUTPUT}")
before_start = internal()
for command in SETUP:
    gdb.execute(command)
gdb.execute(f"heap trace start {RING}")
states = {}
while gdb.selected_inferior().pid:
    stage = value("stage")
    states[stage] = truth()
    if stage == 11:
        traced = gdb.execute("heap trace --json", to_string=True)
        text = gdb.execute("heap trace", to_string=True)
        tracing = internal()
        import gdb_heap.trace
        settled = gdb_heap.trace._tracer.settled
        gdb.execute("heap trace stop")
        print("TRACE_END " + json.dumps({"states": states, "trace": traced, "text": text, "tls_error": tls_error(),
                                         "internal": [before_start, tracing, internal()], "settled": settled}))
        gdb.execute("continue")
        break
    gdb.execute("continue")
print("TRACE_AFTER " + gdb.execute("heap trace --json", to_string=True))
'''


def run_walk(ring: str = "", pre: Sequence[str] = (),
             setup: Sequence[str] = ()) -> Tuple[Dict[str, Any], List[str], Any]:
    with tempfile.TemporaryDirectory(prefix="gdb_heap_trace.") as tmp:
        output = os.path.join(tmp, "out")
        script = os.path.join(tmp, "walk.py")
        with open(script, "w") as f:
            f.write(f"OUTPUT = {output!r}\nRING = {ring!r}\nSETUP = {list(setup)!r}\n" + WALK)
        r = gdb_batch([f"source {script}"], sample("trace_walk"), pre=pre)
        no_traceback(r.stdout + r.stderr)
        with open(output) as f:
            printed = f.read().splitlines()
    end = next(line for line in r.stdout.splitlines() if line.startswith("TRACE_END "))
    after = next(line for line in r.stdout.splitlines() if line.startswith("TRACE_AFTER "))
    return json.loads(end[len("TRACE_END "):]), printed, json_doc(after[len("TRACE_AFTER "):])


@pytest.fixture(scope="module")
def walk():
    return run_walk()


def pointers(printed: List[str]) -> Dict[str, int]:
    return {w[2]: int(w[3], 16) for w in (line.split() for line in printed) if w[:2] == ["@", "ptr"]}


def chunk(request: int) -> int:
    """request2size on x86-64, by hand."""
    return max(32, (request + 8 + 15) // 16 * 16)


def source_line(text: str) -> int:
    with open(os.path.join(ROOT, "c_samples", "trace_walk.c")) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


def expected_calls(p: Dict[str, int]) -> List[Tuple[str, List[int], Any]]:
    """What trace_walk.c does up to its last checkpoint, in order, with the pointers it printed."""
    expected = [("malloc", [24], p["a"]), ("free", [p["a"]], None), ("malloc", [24], p["b"])]
    expected += [("malloc", [24], p[f"f{i}"]) for i in range(8)] + [("free", [p[f"f{i}"]], None) for i in range(8)]
    expected += [("malloc", [n], p[k]) for k, n in (("u", 0x500), ("g", 40), ("v", 0x500), ("w", 0x500),
                                                     ("h", 40), ("t", 0x600))]
    expected += [("free", [p[k]], None) for k in "uvwt"]
    return expected + [("malloc", [200000], p["big"]), ("free", [p["big"]], None)]


@HOST
def test_the_calls_are_what_the_program_did(walk):
    end, printed, _ = walk
    p = pointers(printed)
    calls = json_doc(end["trace"])["calls"]
    expected = expected_calls(p)
    assert [(c["call"], c["args"], c["result"]) for c in calls] == expected
    assert [c["seq"] for c in calls] == list(range(1, len(expected) + 1))
    assert {c["thread"] for c in calls} == {1}
    for c in calls:
        assert c["chunk"] == (c["result"] if c["call"] == "malloc" else c["args"][0]) - 16
    assert json_doc(end["trace"])["tracing"] is True and json_doc(end["trace"])["dropped"] == 0


@HOST
def test_why_each_call_did_what_it_did(walk):
    end, printed, _ = walk
    p = pointers(printed)
    s = {int(k): v for k, v in end["states"].items()}
    calls = json_doc(end["trace"])["calls"]
    first, free_a, malloc_b = calls[0], calls[1], calls[2]
    # The first malloc made the heap with brk: the break it asked for is the heap's end.
    assert s[0]["system_mem"] == 0 and s[1]["system_mem"] > 0
    assert first["from"] == "top"
    brk = [c for c in first["syscalls"] if c["name"] == "brk"]
    assert brk and brk[-1]["args"] == [s[1]["sbrk_base"] + s[1]["system_mem"]] and brk[-1]["result"] == 0
    # free(a): tcache[0] holds it; malloc(24): taken back from there.
    assert (free_a["to"], free_a["bin_index"]) == ("tcache", 0)
    assert (malloc_b["from"], malloc_b["bin_index"]) == ("tcache", 0) and p["b"] == p["a"]
    # Eight frees of 24 bytes: seven fill tcache[0], the eighth goes to fast[0].
    frees = calls[11:19]
    assert [(c["to"], c["bin_index"]) for c in frees[:7]] == [("tcache", 0)] * 7
    # tcache's counts through gdb's reading of the thread-local `tcache`; a gdb without TLS support
    # for this inferior (gdb 10 with glibc 2.36: "Cannot find thread-local variables on this
    # target") has no reading of it: only then is that truth left out (the pointers above still judge).
    if end["tls_error"] is None:
        assert s[2]["count0"] == 1 and s[2]["entry0"] == p["a"]
        assert s[3]["count0"] == 0 and s[4]["count0"] == 7
    else:
        assert "Cannot find thread-local" in end["tls_error"], end["tls_error"]
    if FASTBINS:
        assert (frees[7]["to"], frees[7]["bin_index"]) == ("fast", 0) and s[4]["fast0"] == p["f7"] - 16
    # free(u), free(v): the unsorted bin; free(w) merges with v (its free neighbour before it).
    free_u, free_v, free_w, free_t = calls[25:29]
    assert (free_u["to"], free_u["bin_index"]) == ("unsorted", 1) and s[6]["unsorted"] == p["u"] - 16
    assert free_v["to"] == "unsorted" and s[7]["unsorted"] == p["v"] - 16
    assert free_w["to"] == "unsorted" and free_w["merged_with"] == [p["v"] - 16]
    assert s[8]["unsorted"] == p["v"] - 16 and s[8]["unsorted_size"] == 2 * chunk(0x500)
    # free(t): the chunk before top merges into it.
    assert free_t["to"] == "top" and free_t["merged_with"] == [s[8]["top"]]
    assert s[8]["top"] == p["t"] - 16 + chunk(0x600) and s[9]["top"] == p["t"] - 16
    # A big request: its own mapping, and its free unmaps it.
    big, free_big = calls[29], calls[30]
    assert big["from"] == "mmap" and s[9]["n_mmaps"] == 0 and s[10]["n_mmaps"] == 1
    mmap = [c for c in big["syscalls"] if c["name"] == "mmap"]
    assert len(mmap) == 1 and mmap[0]["result"] == p["big"] - 16 and mmap[0]["args"][1] >= 200000
    assert free_big["to"] == "munmap" and s[11]["n_mmaps"] == 0
    assert [(c["name"], c["args"], c["result"]) for c in free_big["syscalls"]] == [
        ("munmap", [p["big"] - 16, mmap[0]["args"][1]], 0)]
    assert free_big["trimmed"] == mmap[0]["args"][1]
    # Callers: the first frame outside libc (the frees are in main, the mallocs in xmalloc).
    assert free_a["caller"].endswith(f"trace_walk.c:{source_line('free(a);')}")
    assert free_a["caller"].startswith("main at ")
    assert first["caller"].startswith("xmalloc at ")


@HOST
def test_text_and_stop_leave_nothing_behind(walk):
    end, _, after = walk
    text = end["text"]
    assert text.startswith("heap trace: tracing; 31 calls recorded")
    assert "from tcache" not in text and "the head of tcache[0]" in text
    assert "syscall munmap(" in text and "syscall mmap(" in text
    before_start, tracing, after_stop = end["internal"]
    assert tracing >= before_start + 10  # malloc, free... and the return sites
    assert before_start == after_stop  # every breakpoint the trace set is gone
    # trace_walk frees three more chunks after its last checkpoint: not recorded.
    assert after["tracing"] is False and len(after["calls"]) == 31


@HOST
def test_the_ring_keeps_the_last_calls_and_counts_the_rest():
    end, _, _ = run_walk("--ring 5")
    doc = json_doc(end["trace"])
    assert doc["dropped"] == 31 - 5 and [c["seq"] for c in doc["calls"]] == [27, 28, 29, 30, 31]
    assert "5 calls recorded, 26 older ones dropped" in end["text"]


@HOST
def test_set_heap_trace_ring_is_the_default_ring():
    end, _, _ = run_walk(setup=["set heap trace-ring 4"])
    doc = json_doc(end["trace"])
    assert doc["dropped"] == 31 - 4 and [c["seq"] for c in doc["calls"]] == [28, 29, 30, 31]


THREADS = r'''
import gdb, json
gdb.execute("break main")
gdb.execute(f"run > {OUTPUT}")
gdb.execute("heap trace start")
gdb.execute("continue")
print("TRACE " + gdb.execute("heap trace --json", to_string=True))
'''


def run_script(program: str, body: str, tag: str) -> Tuple[str, List[str]]:
    """Run a sample under a gdb Python script (`body`, given OUTPUT: where the program's stdout
    goes); the text after `tag` on the line the script prints, and the program's output lines."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_trace.") as tmp:
        output, script = os.path.join(tmp, "out"), os.path.join(tmp, "script.py")
        with open(script, "w") as f:
            f.write(f"OUTPUT = {output!r}\n" + body)
        r = gdb_batch([f"source {script}"], sample(program))
        no_traceback(r.stdout + r.stderr)
        with open(output) as f:
            printed = f.read().splitlines()
    line = next(line for line in r.stdout.splitlines() if line.startswith(tag))
    return line[len(tag):], printed


@pytest.mark.skipif(CONFIG.static and not CONFIG.symbols, reason="static with libc's ELF symbols stripped: no malloc "
                    "or free symbol to break on, so heap trace start says it cannot trace (one line)")
def test_threads_get_the_same_pointers_traced():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_trace.") as tmp:
        plain = os.path.join(tmp, "plain")
        r = gdb_batch([f"run > {plain}"], sample("threads"))
        no_traceback(r.stderr)
        with open(plain) as f:
            without = f.read().splitlines()
    found, with_trace = run_script("threads", THREADS, "TRACE ")
    calls = json_doc(found)["calls"]

    def same(lines: List[str]) -> List[str]:
        return [re.sub(r"^@ tid (\S+) \d+$", r"@ tid \1", x) for x in lines]  # LWPs differ between runs
    assert same(with_trace) == same(without) and len(without) > 40
    lwps = {w[2]: int(w[3]) for w in (x.split() for x in with_trace) if w[:2] == ["@", "tid"]}
    mallocs = {(c["lwp"], c["args"][0], c["result"]) for c in calls if c["call"] == "malloc"}
    frees = {(c["lwp"], c["args"][0]) for c in calls if c["call"] == "free"}
    ptrs = {}
    checked = 0
    for w in (x.split() for x in with_trace):
        if w[:2] == ["@", "ptr"] and w[2][0] == "t":
            ptrs[w[2]] = int(w[3], 16)
            assert (lwps[w[2].split("_")[0]], int(w[4]), int(w[3], 16)) in mallocs, w
            checked += 1
        elif w[:2] == ["@", "free"] and w[2][0] == "t":
            assert (lwps[w[2].split("_")[0]], ptrs[w[2]]) in frees, w
            checked += 1
    assert checked >= 3 * 12 and len({c["thread"] for c in calls}) >= 4
    # Each worker's first malloc is cut from top; the first worker's made its arena, a new heap,
    # mmapped (glibc's arena limit may let later workers share one: seen on 2.44-i386 on 2 cores).
    firsts = [next(c for c in calls if c["lwp"] == lwp) for lwp in lwps.values()]
    assert all(first["from"] == "top" for first in firsts)
    assert any(s["name"] == "mmap" for s in min(firsts, key=lambda c: c["seq"])["syscalls"])


def test_trace_errors_are_one_line():
    r = gdb_batch(["heap trace bogus", "heap trace start", "heap trace --ring 3", "heap trace --last x"],
                  sample("trace_walk"))
    lines = [x for x in r.stderr.splitlines() if x.startswith("heap:")]
    assert lines[0].startswith("heap: unexpected argument 'bogus'")
    assert lines[1].startswith("heap: no process")
    assert lines[2] == "heap: --ring goes with heap trace start"
    assert lines[3].startswith("heap: --last wants a number")
    no_traceback(r.stdout + r.stderr)


@pytest.mark.skipif(CONFIG.arch != "amd64", reason="i386: the tcache's TLS slot is found through debug symbols only")
@pytest.mark.skipif(CONFIG.static and not CONFIG.symbols, reason="static with libc's ELF symbols stripped: no malloc "
                    "or free to break on (heap trace start says so in one line)")
def test_without_libc_symbols():
    """libc's debug info hidden: the functions are found by libc's exported symbols, the tcache by
    its TLS slot next to thread_arena's; the calls and the tcache's part are the same."""
    end, printed, _ = run_walk(pre=[f"set debug-file-directory {EMPTY_DEBUG_DIR}"])
    p = pointers(printed)
    calls = json_doc(end["trace"])["calls"]
    assert [(c["call"], c["args"], c["result"]) for c in calls] == expected_calls(p)
    assert (calls[1]["to"], calls[1]["bin_index"], calls[2]["from"]) == ("tcache", 0, "tcache")
    assert [c["to"] for c in calls[11:18]] == ["tcache"] * 7
    assert calls[29]["from"] == "mmap" and calls[30]["to"] == "munmap"


TWO_STOPS = "python import gdb_heap.trace; gdb_heap.trace.ONE_STOP = False"  # every call read at its return


def same_records(calls: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "lwp"} for c in calls]  # the LWP differs between runs


@HOST
def test_tcache_calls_settle_at_their_entry(walk):
    """free(a) into tcache[0], malloc(24) = b out of it and free(f0..f6) into it (nine calls, by
    hand from trace_walk.c) are recorded at their entry, with the records a stop at their return
    gives; the rest are read at their return: the first malloc (no tcache yet), mallocs the empty
    tcache cannot serve, the eighth free (tcache[0] full: fast[0]), the unsorted bin, top, mmap."""
    end, printed, _ = walk
    assert end["settled"] == 9
    two, _, _ = run_walk(setup=[TWO_STOPS])
    assert two["settled"] == 0
    calls = json_doc(end["trace"])["calls"]
    assert same_records(calls) == same_records(json_doc(two["trace"])["calls"])
    assert [(c["call"], c["from"] or c["to"]) for c in calls[:3]] == [("malloc", "top"), ("free", "tcache"),
                                                                      ("malloc", "tcache")]
    assert calls[18]["to"] == ("fast" if FASTBINS else "unsorted")  # the eighth free: tcache[0] is full


CHURN = r'''
import gdb, json
SETUP and gdb.execute(SETUP)
gdb.execute("break main")
gdb.execute(f"run {STEPS} > {OUTPUT}")
gdb.execute("heap trace start --ring 100000")
gdb.execute("break checkpoint")
gdb.execute("continue")
import gdb_heap.trace
settled = gdb_heap.trace._tracer.settled
tcache = []
try:
    for i in range(64):
        tcache.append([int(gdb.parse_and_eval(f"tcache->counts[{i}]")),
                       int(gdb.parse_and_eval(f"(unsigned long)tcache->entries[{i}]"))])
except gdb.error as e:
    tcache = str(e)
print("CHURN " + json.dumps({"trace": gdb.execute("heap trace --json", to_string=True), "settled": settled,
                             "tcache": tcache}))
'''


def run_churn(steps: int, setup: str = "") -> Tuple[Dict[str, Any], List[str]]:
    found, printed = run_script("churn", f"STEPS = {steps}\nSETUP = {setup!r}\n" + CHURN, "CHURN ")
    return json.loads(found), printed


@pytest.mark.skipif(CONFIG.static and not CONFIG.symbols, reason="static with libc's ELF symbols stripped: no malloc "
                    "or free to break on (heap trace start says so in one line)")
def test_settled_calls_are_what_glibc_did():
    """c_samples/churn (short-lived allocations: mostly the tcache's): every call and its result
    are what the program printed, the records are those of a stop at every return, most calls
    settle at their entry, and (host glibc, through its debug info) each tcache bin's last free
    says the count and head that gdb reads in glibc's tcache at the checkpoint."""
    end, printed = run_churn(600)
    calls = json_doc(end["trace"])["calls"]
    done: List[Tuple[str, List[int], Optional[int]]] = []
    for w in (line.split() for line in printed):
        if w[:2] == ["@", "malloc"]:
            done.append(("malloc", [int(w[3])], int(w[4], 16)))
        elif w[:2] == ["@", "free"]:
            done.append(("free", [int(w[3], 16)], None))
    assert [(c["call"], c["args"], c["result"]) for c in calls] == done and len(done) >= 600
    two, _ = run_churn(600, TWO_STOPS)
    assert two["settled"] == 0 and same_records(calls) == same_records(json_doc(two["trace"])["calls"])
    tcache_calls = [c for c in calls if "tcache" in (c["from"], c["to"])]
    if CONFIG.static or not tcache_calls and CONFIG.arch == "i386" and CONFIG.glibc_dir is not None:
        # A static program does not carry glibc's version (its layout is only matched): nothing
        # is settled on a guessed version.  i386 finds the thread's tcache through gdb's TLS
        # support only, which these libcs lack.
        assert end["settled"] == 0
        return
    # Every tcache call settles, but from 2.43 the first free: it makes the thread's tcache.
    first_free_makes_it = version_tuple(host_glibc()) >= (2, 43)
    assert end["settled"] == len(tcache_calls) - first_free_makes_it and end["settled"] > len(calls) // 2
    assert any(c["from"] not in (None, "tcache") for c in calls) and any(c["to"] not in (None, "tcache")
                                                                         for c in calls)
    if CONFIG.glibc_dir is not None or CONFIG.static or not CONFIG.symbols:
        return  # glibc's tcache is read through the host libc's debug info
    if isinstance(end["tcache"], str):  # gdb without TLS support for this inferior (see above)
        assert "Cannot find thread-local" in end["tcache"], end["tcache"]
        return
    last = {}
    for c in calls:
        if "tcache" in (c["from"], c["to"]):
            last[c["bin_index"]] = c
    checked = 0
    for i, c in last.items():
        if c["to"] == "tcache":
            count, head = end["tcache"][i]
            assert c["chunk"] == head - 16 and c["why"].endswith(f"now holding {count}"), (i, c, count, head)
            checked += 1
    assert checked >= 10
