#!/usr/bin/env python3
"""Benchmark: the traced call rate of `heap trace` on two workloads.

c_samples/many N: N mallocs cut from top, then a quarter freed into every kind of bin (few
calls the tcache serves); c_samples/churn N: N steps of short-lived allocations (most served
by the thread's tcache and freed back to it, as in most programs).  Each run is a fresh gdb
session: the sample stops in main, `heap trace start` (or nothing, for the untraced time),
then the program runs to its checkpoint; the wall time of that `continue` and the number of
calls recorded give the rate.  Three runs by default (a shared virtual machine: the median is
reported), the kinds of run interleaved so that all see the same load.  Two more kinds give
gdb's own ceilings at the same time: breakpoints at malloc and free, whose handlers only read
the return address, and at each return address too (two stops per call, as the trace needs
for a call it cannot settle at its entry) or not (one stop per call).

usage: python3 bench/trace_rate.py [--readme] [--repeat=K] [N]   (default N=5000, K=3)
  --readme   also write the result into README.md, between <!-- bench-trace --> and <!-- /bench-trace -->
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GDB_SIDE = r"""
import gdb, json, time
gdb.execute("break main")
gdb.execute(f"run {N} > /dev/null")
if TRACE:
    gdb.execute(f"heap trace start --ring {10 * N}")
gdb.execute("break checkpoint")
t0 = time.perf_counter()
gdb.execute("continue")
elapsed = time.perf_counter() - t0
calls = len(json.loads(gdb.execute("heap trace --json", to_string=True))["calls"]) if TRACE else 0
settled = 0
if TRACE:
    import gdb_heap.trace
    settled = gdb_heap.trace._tracer.settled
json.dump({"seconds": elapsed, "calls": calls, "settled": settled}, open(RESULT, "w"))
"""

FLOOR_SIDE = r"""
import gdb, json, time
gdb.execute("break main")
gdb.execute(f"run {N} > /dev/null")
inferior, returns, hits = gdb.selected_inferior(), {}, [0]
WORD = gdb.lookup_type("void").pointer().sizeof
class Return(gdb.Breakpoint):
    def stop(self):
        return False
class Entry(gdb.Breakpoint):
    def stop(self):
        hits[0] += 1
        sp = int(gdb.parse_and_eval("$sp"))
        ret = int.from_bytes(bytes(inferior.read_memory(sp, WORD)), "little")
        if RETURNS and ret not in returns:
            returns[ret] = Return(f"*{ret:#x}", internal=True)
        return False
for name in ("malloc", "free"):  # the calls the samples make
    Entry(name, internal=True).silent = True
gdb.execute("break checkpoint")
t0 = time.perf_counter()
gdb.execute("continue")
elapsed = time.perf_counter() - t0
json.dump({"seconds": elapsed, "calls": hits[0]}, open(RESULT, "w"))
"""


KINDS = ("traced", "untraced", "two stops", "one stop")  # a traced run, and the other kinds beside it


def run_one(sample: str, n: int, kind: str, tmp: str) -> Dict[str, float]:
    script, result = os.path.join(tmp, "side.py"), os.path.join(tmp, "result.json")
    floor = kind in ("two stops", "one stop")
    with open(script, "w") as f:
        f.write(f"N = {n}\nTRACE = {kind == 'traced'}\nRETURNS = {kind == 'two stops'}\nRESULT = {result!r}\n" +
                (FLOOR_SIDE if floor else GDB_SIDE))
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off", "-ex", f"source {ROOT}/gdb_heap/init.py",
            "-ex", f"source {script}", os.path.join(ROOT, "build", sample)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if not os.path.exists(result):
        raise SystemExit(f"bench: gdb gave no result ({sample} {n}, {kind}):\n{p.stderr[-2000:]}")
    with open(result) as f:
        out: Dict[str, float] = json.load(f)
    os.unlink(result)
    return out


def workload(sample: str, n: int, repeat: int, tmp: str) -> Dict[str, float]:
    """Medians over `repeat` rounds, each round one run of every kind."""
    runs: Dict[str, List[Dict[str, float]]] = {k: [] for k in KINDS}
    for _ in range(repeat):
        for kind in KINDS:
            runs[kind].append(run_one(sample, n, kind, tmp))
    traced = runs["traced"]
    return {"calls": statistics.median(r["calls"] for r in traced),
            "settled": statistics.median(r["settled"] for r in traced),
            "seconds": statistics.median(r["seconds"] for r in traced),
            "untraced": statistics.median(r["seconds"] for r in runs["untraced"]),
            "rate": statistics.median(r["calls"] / r["seconds"] for r in traced),
            "two": statistics.median(r["calls"] / r["seconds"] for r in runs["two stops"]),
            "one": statistics.median(r["calls"] / r["seconds"] for r in runs["one stop"])}


def per_call(a: Dict[str, float], b: Dict[str, float]) -> Tuple[float, float]:
    """Seconds per settled call and per other call, from two workloads' traced times (two
    equations: seconds = settled * x + (calls - settled) * y)."""
    a1, a2, b1, b2 = a["settled"], a["calls"] - a["settled"], b["settled"], b["calls"] - b["settled"]
    det = a1 * b2 - a2 * b1
    if not det:
        return 0.0, 0.0
    return (a["seconds"] * b2 - a2 * b["seconds"]) / det, (a1 * b["seconds"] - a["seconds"] * b1) / det


def describe(name: str, n: int, w: Dict[str, float]) -> str:
    return (f"c_samples/{name} {n}: {w['calls']:,.0f} malloc and free calls, {w['settled'] / w['calls']:.0%} of them "
            f"settled at their entry (the tcache's), {w['seconds']:.2f} s traced, {w['untraced']:.3f} s untraced: "
            f"**{w['rate']:,.0f} traced calls per second**; gdb alone, with handlers that read nothing: "
            f"{w['two']:,.0f} calls per second stopping at each call and its return, {w['one']:,.0f} stopping "
            f"at each call only")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeat = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
    n = int(args[0]) if args else 5000
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gdb_heap_bench.") as tmp:
        many = workload("many", n, repeat, tmp)
        churn = workload("churn", n, repeat, tmp)
    settled, other = per_call(many, churn)
    text = (f"`heap trace`, from main to the checkpoint: {describe('many', n, many)}; "
            f"{describe('churn', n, churn)}.  From the two: a call settled at its entry costs "
            f"{settled * 1e6:,.0f} µs ({1 / settled if settled > 0 else 0:,.0f} calls per second), any other "
            f"{other * 1e6:,.0f} µs ({1 / other if other > 0 else 0:,.0f} per second).  Medians of {repeat} "
            f"rounds, {os.cpu_count()} CPUs, load {load:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end.")
    print(text)
    if "--readme" in sys.argv:
        path = os.path.join(ROOT, "README.md")
        with open(path) as f:
            readme = f.read()
        new = re.sub(r"(<!-- bench-trace -->\n).*?(\n<!-- /bench-trace -->)", lambda m: m.group(1) + text + m.group(2),
                     readme, flags=re.S)
        if new == readme and text not in readme:
            raise SystemExit("bench: README.md has no <!-- bench-trace --> markers")
        with open(path, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
