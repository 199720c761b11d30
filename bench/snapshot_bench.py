#!/usr/bin/env python3
"""Benchmark: heap snapshot and heap diff beside heap chunks --summary (the yardstick: a diff
must take at most twice its time), on c_samples/many heaps, one after the other in each gdb
session after an untimed first snapshot, so that each ratio is taken under the same load:
`heap snapshot` (the record's size in bytes, and how much gdb's resident memory grew with it,
after a garbage collection), `heap diff` (the last snapshot against now: a walk of the heap
now, then the merge) and `heap diff 1 2` (two records: the merge alone).

usage: python3 bench/snapshot_bench.py [--readme] [--repeat=K] [N ...]
                                          (default: 10000 100000 1000000, K=3)
  --readme   also write the table into README.md, between <!-- bench-snapshot --> and
             <!-- /bench-snapshot -->
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, write_readme  # noqa: E402  (the README table writer, shared)

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
    subprocess.run(["make", "-s", "build/many"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="gdb_heap_bench.") as tmp:
        table, rows = snapshot_table(sizes, repeat, tmp)
    print()
    print("\n".join(table))
    if "--readme" in sys.argv[1:]:
        write_readme(table, "bench-snapshot")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "snapshot.json"), "w") as f:
        json.dump([{"chunks": n, "command": c, **r} for n, c, r in rows], f, indent=1)


if __name__ == "__main__":
    main()
