#!/usr/bin/env python3
"""Benchmark: heap commands on `many`-like heaps (c_samples/many.c), as ratios to a plain walk.

The reference is the fastest heap walk gdb's Python can do: one loop reading the main heap in
16 MiB windows (gdb.selected_inferior().read_memory) and following the size fields, counting
chunks.  Each (size, command) pair runs in fresh gdb sessions (three by default: this is a
shared virtual machine, so the median ratio is reported): the sample stops at its checkpoint,
the plain walk runs, then the command once, its output sent to a file by gdb's logging
redirect (what a user does to keep a big listing; the pager and the terminal are not
measured).  The ratio is the command's time over the walk's, both in that session, so a busy
machine slows both alike.  Then the driver reads gdb's peak RSS (VmHWM in /proc/PID/status)
while gdb waits for it.

usage: python3 bench/bench.py [--readme] [--repeat=K] [--commands=C1,C2] [N ...]
       (default: 10000 100000 1000000, K=3, every command of COMMANDS)
  --readme   also write the table into README.md, between <!-- bench --> and <!-- /bench -->
             (for 10^7: between <!-- bench-big --> and <!-- /bench-big -->, `make bench-big`)
  --commands only these commands (comma-separated, each one of COMMANDS): to measure one change
             quickly; not with --readme (the table lists every command)
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ["heap chunks --summary", "heap bins", "heap check", "heap chunks", "heap chunks --json"]
# The targets (issue 14), as ratios to the walk.
TARGETS = {"heap chunks --summary": 1.5, "heap bins": 1.2, "heap check": 2.0, "heap chunks": 6.0,
           "heap chunks --json": 6.0}

# The reference walk, in gdb (floors.py measures it too).
PLAIN_WALK = r"""
import gdb, json, os, time
gdb.execute("set pagination off")

def plain_walk():
    # The reference: the main heap from sbrk_base to top, 16 MiB at a time, size fields only.
    start = int(gdb.parse_and_eval("mp_.sbrk_base"))
    top = int(gdb.parse_and_eval("main_arena.top"))
    inferior = gdb.selected_inferior()
    window = 16 << 20
    pos, count = start, 0
    while pos < top:
        base = pos
        words = memoryview(inferior.read_memory(base, min(window, top + 16 - base))).cast("B").cast("Q")
        stop = base + len(words) * 8 - 8
        while pos < stop and pos < top:
            pos += words[(pos - base + 8) >> 3] & ~7
            count += 1
    return count + 1  # and top

"""

GDB_SIDE = PLAIN_WALK + r"""
t0 = time.perf_counter()
walked = plain_walk()
walk = time.perf_counter() - t0
gdb.execute("set logging file " + OUTPUT)
gdb.execute("set logging overwrite on")
gdb.execute("set logging redirect on")
gdb.execute("set logging enabled on")
t0 = time.perf_counter()
gdb.execute(COMMAND)
elapsed = time.perf_counter() - t0
gdb.execute("set logging enabled off")
with open(RESULT + ".tmp", "w") as f:
    json.dump({"seconds": elapsed, "walk": walk, "walked": walked, "output_bytes": os.path.getsize(OUTPUT)}, f)
os.rename(RESULT + ".tmp", RESULT)
open(GO).read()  # the driver reads our peak RSS, then lets us go
"""


def peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def run_one(n: int, command: str, tmp: str) -> Dict[str, Any]:
    script = os.path.join(tmp, "side.py")
    result = os.path.join(tmp, "result.json")
    output = os.path.join(tmp, "output.txt")
    go = os.path.join(tmp, "go")
    for path in (result, go):
        if os.path.exists(path):
            os.remove(path)
    os.mkfifo(go)
    with open(script, "w") as f:
        f.write(f"COMMAND = {command!r}\nOUTPUT = {output!r}\nRESULT = {result!r}\nGO = {go!r}\n" + GDB_SIDE)
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off",
            "-ex", f"source {ROOT}/gdb_heap/init.py", "-ex", "break checkpoint",
            "-ex", f"run {n} > /dev/null", "-ex", f"source {script}", os.path.join(ROOT, "build", "many")]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 1800
    while not os.path.exists(result) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    peak = peak_kib(p.pid) if p.poll() is None else 0
    if p.poll() is None:
        with open(go, "w"):
            pass
    _, err = p.communicate(timeout=120)
    if not os.path.exists(result):
        raise SystemExit(f"bench: gdb gave no result for {command!r} at N={n}:\n{err[-2000:]}")
    with open(result) as f:
        r: Dict[str, Any] = json.load(f)
    with open(output) as f:
        head = f.read(4096)
    if head.startswith("heap:") or "Traceback" in head:
        raise SystemExit(f"bench: {command!r} failed at N={n}: {head[:300]}")
    r["peak_kib"] = peak
    r["ratio"] = r["seconds"] / r["walk"]
    return r


def write_readme(table: List[str], marker: str) -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    i, j = text.index(start) + len(start), text.index(end)
    with open(path, "w") as f:
        f.write(text[:i] + "\n".join(table) + "\n" + text[j:])


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [10_000, 100_000, 1_000_000]
    repeat = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
    chosen = next((a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--commands=")), COMMANDS)
    unknown = [c for c in chosen if c not in COMMANDS]
    if unknown or chosen != COMMANDS and "--readme" in sys.argv[1:]:
        raise SystemExit(f"bench: --commands takes some of {', '.join(COMMANDS)} (comma-separated), "
                         "and not with --readme")
    subprocess.run(["make", "-s", "build/many"], cwd=ROOT, check=True)
    rows: List[Tuple[int, str, Dict[str, Any], List[Dict[str, Any]]]] = []
    with tempfile.TemporaryDirectory(prefix="gdb_heap_bench.") as tmp:
        for n in sizes:
            for command in chosen:
                runs = [run_one(n, command, tmp) for _ in range(repeat)]
                r = dict(sorted(runs, key=lambda x: x["ratio"])[len(runs) // 2])
                r["peak_kib"] = max(x["peak_kib"] for x in runs)
                r["ratios"] = [x["ratio"] for x in runs]
                rows.append((n, command, r, runs))
                met = "ok" if r["ratio"] <= TARGETS[command] else f"over {TARGETS[command]}x"
                print(f"N={n:>8} ({r['walked']} chunks)  {command:<22} {r['seconds']:7.3f} s  walk "
                      f"{r['walk']:6.3f} s  ratio {r['ratio']:5.2f} (runs {', '.join(f'{x:.2f}' for x in r['ratios'])})"
                      f" {met}  {r['peak_kib'] / 1024:7.1f} MiB peak  {r['output_bytes'] / 1e6:7.1f} MB out",
                      flush=True)
    table = ["| chunks | command | × the plain walk (median; range) | target | seconds | gdb peak RSS (MiB) |"
             " output (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n, command, r, _ in rows:
        lo, hi = min(r["ratios"]), max(r["ratios"])
        table.append(f"| {n:,} | `{command}` | {r['ratio']:.2f} ({lo:.2f}-{hi:.2f}) | {TARGETS[command]} | "
                     f"{r['seconds']:.2f} | {r['peak_kib'] / 1024:.0f} | {r['output_bytes'] / 1e6:.1f} |")
    walks = {n: statistics.median(x["walk"] for x in runs) for n, _, _, runs in rows}
    table.append("")
    table.append("The plain walk (median seconds): " + ", ".join(f"{n:,} chunks {w:.3f} s" for n, w in walks.items())
                 + ".")
    print()
    print("\n".join(table))
    if "--readme" in sys.argv[1:]:
        write_readme(table, "bench-big" if min(sizes) >= 10_000_000 else "bench")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = "big.json" if min(sizes) >= 10_000_000 else "latest.json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        json.dump([{"chunks": n, "command": c, **r} for n, c, r, _ in rows], f, indent=1)


if __name__ == "__main__":
    main()
