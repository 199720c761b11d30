#!/usr/bin/env python3
"""Benchmark: heap snapshot and heap diff as ratios to bench.py's plain walk (issue 14's
target: a diff against a snapshot at most twice the walk), beside heap chunks --summary, on
c_samples/many heaps, one after the other in each gdb session (the walk first, then an untimed
first snapshot), so that each ratio is taken under the same load:
`heap snapshot` (the record's size in bytes, and how much gdb's resident memory grew with it,
after a garbage collection), `heap diff` (the last snapshot against now: a walk of the heap
now, then the merge) and `heap diff 1 2` (two records: the merge alone); and gdb's peak RSS
at the end (VmHWM), two records kept.

usage: python3 bench/snapshot_bench.py [--readme] [--repeat=K] [N ...]
                                          (default: 10000 100000 1000000, K=3)
  --readme   also write the table into README.md, between <!-- bench-snapshot --> and
             <!-- /bench-snapshot --> (for 10^7: <!-- bench-snapshot-big -->, `make bench-big`)
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import PLAIN_WALK, ROOT, write_readme  # noqa: E402  (the reference walk and the table writer, shared)

# Timed one after the other in each session, after an untimed first snapshot ("1"): so each
# ratio to heap chunks --summary is taken under the same load (the machine is shared).
SNAPSHOT_SEQUENCE = ["heap chunks --summary", "heap snapshot", "heap diff", "heap diff 1 2"]

# The target of each command (issue 14), as a ratio to the plain walk.
TARGETS = {"heap chunks --summary": 1.5, "heap diff": 2.0}

SEQUENCE_SIDE = PLAIN_WALK + r"""
import gc
def rss():  # after a collection: what the command left behind, not what it used on the way
    gc.collect()
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
t0 = time.perf_counter()
plain_walk()
walk = time.perf_counter() - t0
gdb.execute("heap snapshot", to_string=True)
results = []
for command in SEQUENCE:
    rss0 = rss()
    t0 = time.perf_counter()
    out = gdb.execute(command, to_string=True)
    elapsed = time.perf_counter() - t0
    results.append({"command": command, "seconds": elapsed, "walk": walk, "rss_growth_kib": rss() - rss0,
                    "head": out[:300]})
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
for r in results:
    r["peak_kib"] = peak
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
            ratios = sorted(s[k]["seconds"] / s[k]["walk"] for s in sessions)
            r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2], ratio=ratios[len(ratios) // 2],
                     ratios=ratios, peak_kib=max(x["peak_kib"] for x in runs))
            rows.append((n, command, r))
            target = TARGETS.get(command)
            met = "" if target is None else " ok" if r["ratio"] <= target else f" over {target}x"
            print(f"N={n:>8}  {command:<24} {r['seconds']:7.3f} s  x{r['ratio']:.2f} the walk "
                  f"(runs {', '.join(f'{x:.2f}' for x in ratios)}){met}  {r['peak_kib'] / 1024:.0f} MiB peak",
                  flush=True)
    table = ["| chunks | command | seconds (median) | × the plain walk (median; range) | target | record (MB) | "
             "gdb RSS kept (MiB) |", "|---:|---|---:|---:|---:|---:|---:|"]
    for n, command, r in rows:
        record = re.search(r"(\d+) bytes recorded", r["head"]) if command == "heap snapshot" else None
        size = f"{int(record.group(1)) / 1e6:.1f} | {r['rss_growth_kib'] / 1024:.0f}" if record else "- | -"
        lo, hi = r["ratios"][0], r["ratios"][-1]
        table.append(f"| {n:,} | `{command}` | {r['seconds']:.2f} | {r['ratio']:.2f} ({lo:.2f}-{hi:.2f}) | "
                     f"{TARGETS.get(command, '-')} | {size} |")
    peaks: Dict[int, int] = {}
    for n, _, r in rows:
        peaks[n] = max(peaks.get(n, 0), r["peak_kib"])
    table.append("")
    table.append("gdb's peak RSS in these sessions, two records kept (MiB, the most of the runs): "
                 + ", ".join(f"{n:,} chunks {k / 1024:.0f}" for n, k in peaks.items()) + ".")
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
        write_readme(table, "bench-snapshot-big" if min(sizes) >= 10_000_000 else "bench-snapshot")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = "snapshot-big.json" if min(sizes) >= 10_000_000 else "snapshot.json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        json.dump([{"chunks": n, "command": c, **r} for n, c, r in rows], f, indent=1)


if __name__ == "__main__":
    main()
