#!/usr/bin/env python3
"""Benchmark: the traced call rate of `heap trace` (c_samples/many: N mallocs, then frees).

Each run is a fresh gdb session: the sample stops in main, `heap trace start` (or nothing, for
the untraced time), then the program runs to its checkpoint; the wall time of that `continue`
and the number of calls recorded give the rate.  Three runs by default (a shared virtual
machine: the median is reported).  A third kind of run gives gdb's own ceiling at the same
time: breakpoints at malloc and free and at each return address, as the trace sets them,
whose handlers only find the return address: two stops per call and no reading.

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
from typing import Dict

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
json.dump({"seconds": elapsed, "calls": calls}, open(RESULT, "w"))
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
        if ret not in returns:
            returns[ret] = Return(f"*{ret:#x}", internal=True)
        return False
for name in ("malloc", "free"):  # the calls c_samples/many makes
    Entry(name, internal=True).silent = True
gdb.execute("break checkpoint")
t0 = time.perf_counter()
gdb.execute("continue")
elapsed = time.perf_counter() - t0
json.dump({"seconds": elapsed, "calls": hits[0]}, open(RESULT, "w"))
"""


def run_one(n: int, trace: bool, tmp: str, floor: bool = False) -> Dict[str, float]:
    script, result = os.path.join(tmp, "side.py"), os.path.join(tmp, "result.json")
    with open(script, "w") as f:
        f.write(f"N = {n}\nTRACE = {trace}\nRESULT = {result!r}\n" + (FLOOR_SIDE if floor else GDB_SIDE))
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off", "-ex", f"source {ROOT}/gdb_heap/init.py",
            "-ex", f"source {script}", os.path.join(ROOT, "build", "many")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if not os.path.exists(result):
        raise SystemExit(f"bench: gdb gave no result (trace={trace}, N={n}):\n{p.stderr[-2000:]}")
    with open(result) as f:
        out: Dict[str, float] = json.load(f)
    os.unlink(result)
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeat = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
    n = int(args[0]) if args else 5000
    with tempfile.TemporaryDirectory(prefix="gdb_heap_bench.") as tmp:
        traced = [run_one(n, True, tmp) for _ in range(repeat)]
        plain = [run_one(n, False, tmp) for _ in range(repeat)]
        floor = [run_one(n, False, tmp, floor=True) for _ in range(repeat)]
    calls = int(statistics.median(r["calls"] for r in traced))
    seconds = statistics.median(r["seconds"] for r in traced)
    untraced = statistics.median(r["seconds"] for r in plain)
    rate = calls / seconds
    ceiling = statistics.median(r["calls"] / r["seconds"] for r in floor)
    text = (f"`heap trace` on c_samples/many {n} ({calls} malloc and free calls from main to its "
            f"checkpoint): {seconds:.2f} s traced, {untraced:.3f} s untraced: **{rate:,.0f} traced calls "
            f"per second**; gdb alone, stopping at each call and its return with handlers that read "
            f"nothing: {ceiling:,.0f} calls per second (medians of {repeat} runs, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}).")
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
