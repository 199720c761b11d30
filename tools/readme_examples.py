#!/usr/bin/env python3
"""Regenerate the example output in README.md from real gdb sessions.

Each example in the README is a marker line followed by a fenced block:

    <!-- gdb: SAMPLE [ARGS] | COMMAND | COMMAND ... -->
    ```
    (output, replaced by this tool)
    ```

The tool runs `gdb -batch` on build/SAMPLE with gdb_heap loaded and the given gdb commands
(each shown after a "(gdb)" prompt) and writes what they print into the block.  Lines of
gdb's own start-up chatter are left out.  A command that should not be shown is prefixed
with "!" (it runs, its prompt and output are hidden).

usage: python3 tools/readme_examples.py [--check]   (--check: exit 1 if README.md would change)
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"^<!-- gdb: (?P<spec>.*) -->$")
NOISE = re.compile(r"^(\[Thread debugging|Using host libthread_db|\[Inferior \d+ .* exited)")
SEP = "@@gdb_heap_readme@@"


def run_example(spec: str) -> str:
    parts = [p.strip() for p in spec.split("|")]
    program, *args = parts[0].split()
    argv = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off", "-ex", "set pagination off",
            "-ex", "set width 0", "-ex", f"source {ROOT}/gdb_heap/init.py"]
    shown = []
    for i, command in enumerate(parts[1:]):
        hidden = command.startswith("!")
        command = command.lstrip("!").strip()
        command = command.replace("$ARGS", " ".join(args))
        argv += ["-ex", f"echo {SEP}{i}{'h' if hidden else ''}\\n", "-ex", command]
        shown.append(command)
    argv.append(os.path.join(ROOT, "build", program))
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                       timeout=300, env=dict(os.environ, COLUMNS="120"))
    out = p.stdout
    text: list = []
    blocks = re.split(rf"{SEP}(\d+h?)\n", out)
    for tag, body in zip(blocks[1::2], blocks[2::2]):
        if tag.endswith("h"):
            continue
        body_lines = [line for line in body.splitlines() if not NOISE.match(line)]
        text.append(f"(gdb) {shown[int(tag)]}")
        text.extend(line.rstrip() for line in body_lines)
    return "\n".join(text).rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    subprocess.run(["make", "-s", "samples"], cwd=ROOT, check=True)
    with open(README) as f:
        lines = f.read().splitlines(keepends=True)
    out = []
    i = 0
    count = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = MARKER.match(line.rstrip("\n"))
        if m and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            out.append(lines[i + 1])
            out.append(run_example(m.group("spec")))
            out.append(lines[end])
            count += 1
            i = end + 1
            continue
        i += 1
    new = "".join(out)
    with open(README) as f:
        old = f.read()
    if check:
        print(f"readme: {count} examples; {'unchanged' if new == old else 'would change'}")
        return 0 if new == old else 1
    with open(README, "w") as f:
        f.write(new)
    print(f"readme: {count} examples regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
