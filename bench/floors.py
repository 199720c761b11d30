"""How close the benchmarked commands are to what any implementation in gdb's Python must spend:
each command's floor, as a ratio to the plain walk, next to its target.

The parts no implementation can skip, each measured in one gdb session on `build/many N`, after
the plain walk of bench.py (W):
  count   the plain walk that also counts the chunks by size field at C speed (Counter.update of
          each window's sizes): what a summary does before it knows which chunks are free
  lists   following every bin list once (the selected thread's tcache, the fast bins, the unsorted,
          small and large bins), the fastest way this project knows: gdb_heap's own reading,
          runs of blocks for lists that run down the heap, single reads for scattered ones.  A
          tcache or fast bin chunk looks in use to a walk (its next chunk's PREV_INUSE stays set),
          so a command that tells free chunks from used ones follows every list.
  format  one %-format per chunk of a listing line (chunk, user pointer, size, flags and state,
          two words and 16 ASCII characters, all given) or of a JSON object, at C speed
  write   gdb.write of those bytes, about 1 MB a call, into a file through gdb's logging
          redirect (as bench.py sends a command's output)
Floors: --summary >= count + lists; heap bins >= lists; heap check >= W + lists; heap chunks
>= W + lists + format + write (text); --json the same with the JSON objects.  Each as a ratio to W.

usage: python3 bench/floors.py [--readme] [--repeat=K] [N ...]   (default: 1000000, K=3: medians)
  --readme   also write the table into README.md, between <!-- bench-floors --> and <!-- /bench-floors -->
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

from bench import COMMANDS, PLAIN_WALK, ROOT, TARGETS, write_readme

FLOOR_SIDE = r"""
import gdb, json, time
from collections import Counter
from operator import add, and_
from itertools import repeat
gdb.execute("set pagination off")

def counting_walk(keep):
    # the plain walk, counting each window's size fields; `keep`: also return them all
    start = int(gdb.parse_and_eval("mp_.sbrk_base"))
    top = int(gdb.parse_and_eval("main_arena.top"))
    inferior = gdb.selected_inferior()
    window = 16 << 20
    pos, every = start, Counter()
    sizes = []
    while pos < top:
        base = pos
        words = memoryview(inferior.read_memory(base, min(window, top + 16 - base))).cast("B").cast("Q")
        stop = base + len(words) * 8 - 8
        got = []
        while pos < stop and pos < top:
            size = words[(pos - base + 8) >> 3]
            got.append(size)
            pos += size & ~7
        every.update(got)
        if keep:
            sizes += got
    return sizes, every

def timed(f):
    t0 = time.perf_counter()
    value = f()
    return time.perf_counter() - t0, value

def format_and_write(pieces):
    # Formats and writes `pieces` (each a function giving one slice's text) as a command
    # streams its output: (seconds formatting, seconds writing, bytes).
    gdb.execute("set logging file " + OUTPUT)
    gdb.execute("set logging overwrite on")
    gdb.execute("set logging redirect on")
    gdb.execute("set logging enabled on")
    making = writing = 0.0
    size = 0
    for piece in pieces:
        t0 = time.perf_counter()
        text = piece()
        t1 = time.perf_counter()
        gdb.write(text)
        t2 = time.perf_counter()
        making, writing, size = making + t1 - t0, writing + t2 - t1, size + len(text)
    gdb.execute("set logging enabled off")
    return making, writing, size

class Args:
    values = {}
    def flag(self, name):
        return False

t = {}
t["walk"], walked = timed(plain_walk)
t["count"], _ = timed(lambda: counting_walk(False))
sizes, _ = counting_walk(True)  # the chunks to format below
from gdb_heap.commands.base import open_heap
heap = open_heap(Args())
t["lists"], _ = timed(lambda: heap.bins(heap.main_arena))
start = int(gdb.parse_and_eval("mp_.sbrk_base"))
addresses = [start]
for s in sizes[:-1]:
    addresses.append(addresses[-1] + (s & ~7))
line = "%#x %#x %#7x %s %#018x %#018x %s"
obj = ('{"address": %d, "size": %d, "prev_inuse": true, "is_mmapped": false, "non_main_arena": false, '
       '"state": "in_use", "bin": null, "bin_index": null, "user_address": %d, "usable_size": %d}')
SLICE = 8192  # chunks a piece: about what a walk batch of a 64 KiB block holds, some times over

def lines(a, z):
    return "\n".join(map(line.__mod__, zip(
        a, map(add, a, repeat(16)), map(and_, z, repeat(~7)), repeat("P.. in use         "),
        repeat(0x4142434445464748), repeat(0x3132333435363738), repeat("HGFEDCBA87654321")))) + "\n"

def objects(a, z):
    return ", ".join(map(obj.__mod__, zip(a, map(and_, z, repeat(~7)), map(add, a, repeat(16)),
                                          map(and_, z, repeat(~7))))) + ", "

for name, make in (("text", lines), ("json", objects)):
    pieces = [(lambda i=i: make(addresses[i:i + SLICE], sizes[i:i + SLICE])) for i in range(0, len(sizes), SLICE)]
    t["format " + name], t["write " + name], t[name + " bytes"] = format_and_write(pieces)
t["chunks"] = walked
with open(RESULT, "w") as f:
    json.dump(t, f)
"""


def run(n: int, tmp: str) -> Dict[str, float]:
    script, result = os.path.join(tmp, "floors.py"), os.path.join(tmp, "floors.json")
    if os.path.exists(result):
        os.remove(result)
    with open(script, "w") as f:
        f.write(f"OUTPUT = {os.path.join(tmp, 'output.txt')!r}\nRESULT = {result!r}\n" + PLAIN_WALK + FLOOR_SIDE)
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off",
            "-ex", f"source {ROOT}/gdb_heap/init.py", "-ex", "break checkpoint",
            "-ex", f"run {n} > /dev/null", "-ex", f"source {script}", os.path.join(ROOT, "build", "many")]
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if not os.path.exists(result):
        raise SystemExit(f"floors: gdb gave no result at N={n}:\n{p.stderr[-2000:]}")
    with open(result) as f:
        got: Dict[str, float] = json.load(f)
    return got


def floors(t: Dict[str, float]) -> Dict[str, float]:
    w, lists = t["walk"], t["lists"]
    return {"heap chunks --summary": (t["count"] + lists) / w,
            "heap bins": lists / w,
            "heap check": (w + lists) / w,
            "heap chunks": (w + lists + t["format text"] + t["write text"]) / w,
            "heap chunks --json": (w + lists + t["format json"] + t["write json"]) / w}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [1_000_000]
    repeat = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
    subprocess.run(["make", "-s", "build/many"], cwd=ROOT, check=True)
    measured: Dict[int, Dict[str, float]] = {}
    for name in ("latest.json", "big.json"):
        path = os.path.join(ROOT, "bench", "results", name)
        if os.path.exists(path):
            with open(path) as f:
                for row in json.load(f):
                    measured.setdefault(row["chunks"], {})[row["command"]] = row["ratio"]
    lines = ["| chunks | command | floor (× the plain walk, median) | target | bench.py's last median |",
             "|---:|---|---:|---:|---:|"]
    notes: List[str] = []
    with tempfile.TemporaryDirectory(prefix="gdb_heap_floors.") as tmp:
        for n in sizes:
            runs = [run(n, tmp) for _ in range(repeat)]
            parts = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"N={n}: " + ", ".join(f"{k} {v:.3f}" + ("" if "bytes" in k or k == "chunks" else " s")
                                         for k, v in parts.items()), flush=True)
            lows = [floors(r) for r in runs]
            for command in COMMANDS:
                low = statistics.median(x[command] for x in lows)
                ours = measured.get(n, {}).get(command)
                lines.append(f"| {n:,} | `{command}` | {low:.2f} | {TARGETS[command]} | "
                             + (f"{ours:.2f} |" if ours is not None else "- |"))
            notes.append(f"The parts at {n:,} chunks (median seconds): " + ", ".join(
                f"{k} {parts[k]:.3f}" for k in ("walk", "count", "lists", "format text", "write text", "format json",
                                                 "write json")) + ".")
    lines += [""] + notes
    print("\n".join(lines))
    if "--readme" in sys.argv[1:]:
        write_readme(lines, "bench-floors")


if __name__ == "__main__":
    main()
