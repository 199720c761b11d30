#!/usr/bin/env python3
"""Benchmark: heap commands on heaps of 10^4, 10^5 and 10^6 chunks (c_samples/many).

Each (size, command) pair runs in fresh gdb sessions (three by default: this is a shared
virtual machine, so the median is reported): the sample is stopped at its checkpoint, the
command runs once with its output sent to a file (gdb's logging redirect), and the gdb
process reports the command's wall time and its own peak RSS (VmHWM, the largest is kept).

With --snapshot it measures heap snapshot and heap diff instead, beside heap chunks --summary
(the yardstick: a diff must take at most twice its time), one after the other in each session
after an untimed first snapshot, so that each ratio is taken under the same load: `heap
snapshot` (the record's size in bytes, and how much gdb's resident memory grew with it, after
a garbage collection: what the snapshot keeps, as the memory allocator lays it out), `heap
diff` (the last snapshot against now: a walk of the heap now, then the merge) and `heap diff
1 2` (two records: the merge alone).

usage: python3 bench/bench.py [--readme] [--snapshot] [--repeat=K] [N ...]
                                         (default: 10000 100000 1000000, K=3)
  --readme   also write the table into README.md, between <!-- bench --> and <!-- /bench -->
             (with --snapshot: between <!-- bench-snapshot --> and <!-- /bench-snapshot -->)
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ["heap chunks", "heap chunks --summary", "heap chunks --json", "heap bins"]
# Timed one after the other in each session, after an untimed first snapshot ("1"): so each
# ratio to heap chunks --summary is taken under the same load (the machine is shared).
SNAPSHOT_SEQUENCE = ["heap chunks --summary", "heap snapshot", "heap diff", "heap diff 1 2"]

SEQUENCE_SIDE = r"""
import gc, gdb, json, time
gdb.execute("set pagination off")
def rss():  # after a collection: what the command left behind, not what it used on the way
    gc.collect()
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
gdb.execute("heap snapshot", to_string=True)
results = []
for command in SEQUENCE:
    rss0 = rss()
    t0 = time.perf_counter()
    out = gdb.execute(command, to_string=True)
    elapsed = time.perf_counter() - t0
    results.append({"command": command, "seconds": elapsed, "rss_growth_kib": rss() - rss0, "head": out[:300]})
json.dump(results, open(RESULT, "w"))
"""

GDB_SIDE = r"""
import gdb, json, os, time
gdb.execute("set pagination off")
gdb.execute("set logging file " + OUTPUT)
gdb.execute("set logging overwrite on")
gdb.execute("set logging redirect on")
gdb.execute("set logging enabled on")
t0 = time.perf_counter()
gdb.execute(COMMAND)
elapsed = time.perf_counter() - t0
gdb.execute("set logging enabled off")
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
json.dump({"seconds": elapsed, "peak_kib": peak, "output_bytes": os.path.getsize(OUTPUT)}, open(RESULT, "w"))
"""


def in_gdb(n: int, tmp: str, side: str, what: str) -> Any:
    """Runs `side` (Python; it writes its result as JSON to RESULT) in a fresh gdb session on
    `many N` stopped at its checkpoint, and returns the result."""
    script = os.path.join(tmp, "side.py")
    result = os.path.join(tmp, "result.json")
    with open(script, "w") as f:
        f.write(f"RESULT = {result!r}\n" + side)
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off",
            "-ex", f"source {ROOT}/gdb_heap/init.py", "-ex", "break checkpoint",
            "-ex", f"run {n} > /dev/null", "-ex", f"source {script}", os.path.join(ROOT, "build", "many")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if not os.path.exists(result):
        raise SystemExit(f"bench: gdb gave no result for {what} at N={n}:\n{p.stderr[-2000:]}")
    with open(result) as f:
        r = json.load(f)
    os.remove(result)
    return r


def run_one(n: int, command: str, tmp: str) -> Dict[str, Any]:
    output = os.path.join(tmp, "output.txt")
    r: Dict[str, Any] = in_gdb(n, tmp, f"COMMAND = {command!r}\nOUTPUT = {output!r}\n" + GDB_SIDE, repr(command))
    with open(output) as f:
        head = f.read(4096)
    if head.startswith("heap:") or "Traceback" in head:
        raise SystemExit(f"bench: {command!r} failed at N={n}: {head[:300]}")
    return r


def write_readme(table: List[str], marker: str = "bench") -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    i, j = text.index(start) + len(start), text.index(end)
    with open(path, "w") as f:
        f.write(text[:i] + "\n".join(table) + "\n" + text[j:])


def median_run(n: int, command: str, tmp: str, repeat: int) -> Dict[str, Any]:
    runs = [run_one(n, command, tmp) for _ in range(repeat)]
    r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2])
    r["peak_kib"] = max(x["peak_kib"] for x in runs)
    print(f"N={n:>8}  {command:<24} {r['seconds']:7.3f} s  {r['peak_kib'] / 1024:7.1f} MiB peak  "
          f"{r['output_bytes'] / 1e6:8.1f} MB out", flush=True)
    return r


def commands_table(sizes: List[int], repeat: int, tmp: str) -> List[Any]:
    rows = [(n, command, median_run(n, command, tmp, repeat)) for n in sizes for command in COMMANDS]
    table = ["| chunks | command | seconds (median) | µs per chunk | gdb peak RSS (MiB) | output (MB) |",
             "|---:|---|---:|---:|---:|---:|"]
    for n, command, r in rows:
        table.append(f"| {n:,} | `{command}` | {r['seconds']:.2f} | {r['seconds'] / n * 1e6:.2f} | "
                     f"{r['peak_kib'] / 1024:.0f} | {r['output_bytes'] / 1e6:.1f} |")
    return [table, rows]


def run_sequence(n: int, tmp: str) -> List[Dict[str, Any]]:
    runs: List[Dict[str, Any]] = in_gdb(n, tmp, f"SEQUENCE = {SNAPSHOT_SEQUENCE!r}\n" + SEQUENCE_SIDE,
                                        "the snapshot sequence")
    return runs


def snapshot_table(sizes: List[int], repeat: int, tmp: str) -> List[Any]:
    rows = []
    for n in sizes:
        sessions = [run_sequence(n, tmp) for _ in range(repeat)]
        for k, command in enumerate(SNAPSHOT_SEQUENCE):
            runs = [s[k] for s in sessions]
            ratios = sorted(s[k]["seconds"] / s[0]["seconds"] for s in sessions)
            r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2], ratio=ratios[len(ratios) // 2])
            rows.append((n, command, r))
            print(f"N={n:>8}  {command:<24} {r['seconds']:7.3f} s  x{r['ratio']:.2f}", flush=True)
    table = ["| chunks | command | seconds (median) | x `heap chunks --summary` (median) | record (MB) | "
             "gdb RSS kept (MiB) |", "|---:|---|---:|---:|---:|---:|"]
    for n, command, r in rows:
        record = re.search(r"(\d+) bytes recorded", r["head"]) if command == "heap snapshot" else None
        size = f"{int(record.group(1)) / 1e6:.1f} | {r['rss_growth_kib'] / 1024:.0f}" if record else "- | -"
        table.append(f"| {n:,} | `{command}` | {r['seconds']:.2f} | {r['ratio']:.2f} | {size} |")
    return [table, rows]


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [10_000, 100_000, 1_000_000]
    repeat = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
    snapshot = "--snapshot" in sys.argv[1:]
    subprocess.run(["make", "-s", "build/many"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="gdb_heap_bench.") as tmp:
        table, rows = (snapshot_table if snapshot else commands_table)(sizes, repeat, tmp)
    print()
    print("\n".join(table))
    if "--readme" in sys.argv[1:]:
        write_readme(table, "bench-snapshot" if snapshot else "bench")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "snapshot.json" if snapshot else "latest.json"), "w") as f:
        json.dump([{"chunks": n, "command": c, **r} for n, c, r in rows], f, indent=1)


if __name__ == "__main__":
    main()
