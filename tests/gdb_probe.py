"""Runs inside gdb (`source tests/gdb_probe.py`): stops a sample at every checkpoint, runs the
heap commands and records gdb's own reading of glibc's state beside them.

It does not import gdb_heap: the "truth" it records comes from glibc's debug info through
gdb's expression evaluator (main_arena, mp_, *tcache, struct malloc_chunk), from the sample's
printed facts, and from the sample's malloc_info() snapshot.  Parameters come in a JSON file
named by $GDB_HEAP_PROBE; results go to the file named inside it.
"""

import json
import os
from typing import Any, Dict, List

import gdb

PARAMS = json.load(open(os.environ["GDB_HEAP_PROBE"]))


def run(command):
    try:
        return {"ok": True, "out": gdb.execute(command, to_string=True)}
    except gdb.error as e:  # GdbError reaches us as gdb.error
        return {"ok": False, "out": str(e)}


def ival(expression):
    value = gdb.parse_and_eval(expression)
    assert value is not None
    return int(value)


def facts(path):
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = [line.split() for line in f if line.startswith("@ ")]
    return lines


def walk_regular_bins(S):
    """Bins 1..126 from main_arena.bins, following fd through struct malloc_chunk."""
    chains = {}
    bins = gdb.parse_and_eval("main_arena.bins")
    for i in range(1, 127):
        slot = bins[2 * (i - 1)]
        assert slot.address is not None
        header = int(slot.address) - 2 * S
        p = int(bins[2 * (i - 1)])
        chain: List[int] = []
        while p not in (header, 0) and len(chain) < 100000:  # 0: bins not set up before malloc_init
            chain.append(p)
            p = ival(f"((struct malloc_chunk *) {p})->fd")
        if chain:
            chains[i] = chain
    return chains


def fastbins():
    try:
        heads = gdb.parse_and_eval("main_arena.fastbinsY")
    except gdb.error:
        return None  # glibc 2.43+: no fastbins
    lo, hi = heads.type.range()
    # Raw fd words: the test reveals them (safe-linking) by its own arithmetic.
    out = {}
    for i in range(lo, hi + 1):
        p = int(heads[i])
        if p:
            out[i] = {"head": p}
    return out


def raw_word(address):
    return ival(f"*(unsigned long *) {address}")


def tcache():
    try:
        if ival("(unsigned long) tcache") == 0:
            return {"error": "tcache is NULL"}
        t = gdb.parse_and_eval("*tcache")
        t.fetch_lazy()
    except gdb.error as e:
        return {"error": str(e)}
    names = [f.name for f in t.type.strip_typedefs().fields()]
    counts_name = "counts" if "counts" in names else "num_slots"
    n = t[counts_name].type.range()[1] + 1
    return {"address": ival("(unsigned long) tcache"), "counts_field": counts_name,
            "counts": [int(t[counts_name][i]) for i in range(n)],
            "entries": [int(t["entries"][i]) for i in range(n)]}


def tcache_chunks(S):
    """Chunk addresses in the selected thread's tcache, through gdb's reading of `*tcache`."""
    t = tcache()
    chunks: List[int] = []
    for e in t.get("entries", []):
        while e and len(chunks) < 100000:
            chunks.append(e - 2 * S)
            stored = raw_word(e)
            e = stored ^ (e >> 12) if PARAMS.get("safe_linking") else stored
    return chunks


def per_thread(read):
    """thread number -> read(thread), with each thread selected in turn; gdb's selected thread
    and frame are restored."""
    selected, frame = gdb.selected_thread(), gdb.selected_frame()
    out = {}
    for thread in gdb.selected_inferior().threads():
        thread.switch()
        out[str(thread.num)] = read(thread)
    selected.switch()
    frame.select()
    return out


def every_thread_tcache(S):
    """thread number -> its tcache's chunks."""
    return per_thread(lambda thread: tcache_chunks(S))


def arenas_truth(S):
    """Every arena on the next ring and its heap_info chain, through glibc's debug info."""
    heap_max = (64 << 20) if S == 8 else (1 << 20)  # HEAP_MAX_SIZE (x86-64 / i386)
    main = ival("(unsigned long) &main_arena")
    out: List[Dict[str, Any]] = []
    a = main
    while len(out) < 64:
        st = f"((struct malloc_state *) {a})"
        rec = {"address": a, "top": ival(f"(unsigned long) {st}->top"), "next": ival(f"(unsigned long) {st}->next"),
               "system_mem": ival(f"{st}->system_mem"), "attached_threads": ival(f"{st}->attached_threads"),
               "heaps": []}
        h = rec["top"] & ~(heap_max - 1) if a != main else 0
        while h and len(rec["heaps"]) < 1000:
            hi = f"((heap_info *) {h})"
            rec["heaps"].append({"heap_info": h, "ar_ptr": ival(f"(unsigned long) {hi}->ar_ptr"),
                                 "size": ival(f"{hi}->size"), "mprotect_size": ival(f"{hi}->mprotect_size")})
            h = ival(f"(unsigned long) {hi}->prev")
        out.append(rec)
        a = rec["next"]
        if a == main:
            break
    return out


def threads_truth(S):
    """Per thread (gdb's number): its LWP, thread_arena, tcache and tcache chunks, by debug info
    (gdb's TLS support: {"error": ...} where it has none)."""
    def read(thread):
        try:
            return {"lwp": thread.ptid[1], "arena": ival("(unsigned long) thread_arena"),
                    "tcache": ival("(unsigned long) tcache"), "chunks": tcache_chunks(S)}
        except gdb.error as e:
            return {"error": str(e)}
    return per_thread(read)


def heap_walk(S):
    """Chunk addresses and size words from mp_.sbrk_base to the end of top, via debug info."""
    top = ival("main_arena.top")
    start = ival("mp_.sbrk_base")
    while (start + 2 * S) % 16:
        start += S
    chunks: List[List[int]] = []
    p = start
    while len(chunks) < 200000:
        size = ival(f"((struct malloc_chunk *) {p})->mchunk_size")
        chunks.append([p, size])
        if p == top or size & ~7 == 0:
            break
        p += size & ~7
    return chunks


def truth():
    S = ival("sizeof(size_t)")
    t = {"S": S, "main_arena": ival("(unsigned long) &main_arena"), "top": ival("main_arena.top"),
         "system_mem": ival("main_arena.system_mem"), "sbrk_base": ival("mp_.sbrk_base"),
         "tcache_count": ival("mp_.tcache_count"), "n_mmaps": ival("mp_.n_mmaps"),
         "unsorted_header": ival("(unsigned long) &main_arena.bins[0]") - 2 * S}
    initial = t["top"] in (0, t["unsorted_header"])
    t["initialised"] = not initial and t["sbrk_base"] != 0
    if t["initialised"]:
        t["top_size"] = ival(f"((struct malloc_chunk *) {t['top']})->mchunk_size") & ~7
        t["chunks"] = heap_walk(S)
    t["bins"] = {str(k): v for k, v in walk_regular_bins(S).items()}
    fb = fastbins()
    if fb is not None:
        for entry in fb.values():
            chain: List[int] = []
            p = entry["head"]
            while p and len(chain) < 100000:
                chain.append(p)
                stored = raw_word(p + 2 * S)
                p = stored ^ ((p + 2 * S) >> 12) if PARAMS.get("safe_linking") else stored
            entry["chain"] = chain
    t["fastbins"] = {str(k): v for k, v in fb.items()} if fb is not None else None
    t["tcache"] = tcache()
    if "entries" in t["tcache"]:
        chains = []
        for e in t["tcache"]["entries"]:
            tchain: List[int] = []
            while e and len(tchain) < 1000:
                tchain.append(e)
                stored = raw_word(e)
                e = stored ^ (e >> 12) if PARAMS.get("safe_linking") else stored
            chains.append(tchain)
        t["tcache"]["chains"] = chains
    if PARAMS.get("thread_tcaches"):
        t["thread_tcaches"] = every_thread_tcache(S)
    if PARAMS.get("arenas_truth"):
        t["arenas"] = arenas_truth(S)
        t["threads"] = threads_truth(S)
    try:
        t["malloc_info"] = gdb.parse_and_eval("(char *) mi_buf").string()
    except gdb.error:
        t["malloc_info"] = None
    return t


def main():
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute(f"source {PARAMS['init']}")
    stages: List[Dict[str, Any]] = []
    results = {"before_run": {c: run(c) for c in PARAMS.get("before_run", [])}, "stages": stages}
    gdb.execute("break checkpoint")
    args = " ".join(PARAMS.get("args", []))
    gdb.execute(f"run {args} > {PARAMS['program_out']}")
    while gdb.selected_inferior().pid:
        frame = gdb.selected_frame()
        if frame.name() != "checkpoint":
            break
        stage = ival("stage")
        commands = list(PARAMS.get("commands", []))
        if PARAMS.get("chunk_for_pointers"):
            for f in facts(PARAMS["program_out"]):
                if f[1] == "ptr":
                    commands.append(f"heap chunk {f[3]} --json")
        record = {"stage": stage, "facts": facts(PARAMS["program_out"]),
                  "commands": {c: run(c) for c in commands}}
        record["truth"] = truth() if PARAMS.get("truth", True) else None
        stages.append(record)
        if stage >= PARAMS.get("last_stage", 1 << 30):
            break
        gdb.execute("continue")
    with open(PARAMS["result"], "w") as f:
        json.dump(results, f)


try:
    main()
except Exception as e:  # report, so the test shows what went wrong inside gdb
    with open(PARAMS["result"], "w") as f:
        json.dump({"probe_error": f"{type(e).__name__}: {e}"}, f)
