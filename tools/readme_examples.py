#!/usr/bin/env python3
"""Regenerate the example output in README.md and docs/walkthrough.md from real gdb sessions.

Each example in a document is a marker line followed by a fenced block:

    <!-- gdb: SAMPLE [ARGS] | COMMAND | COMMAND ... -->
    ```
    (output, replaced by this tool)
    ```

The tool runs `gdb -batch` on build/SAMPLE with gdb_heap loaded and the given gdb commands
(each shown after a "(gdb)" prompt) and writes what they print into the block.  Lines of
gdb's own start-up chatter are left out.  A command that should not be shown is prefixed
with "!" (it runs, its prompt and output are hidden).  Paths under the project's directory
are written relative to it.

A new example is its marker followed by an empty fenced block: the tool fills it.

usage: python3 tools/readme_examples.py [--check] [FILE ...]   (default: README.md)
  --check   exit 1 if a file would change in what is stable from one run to the next: the
            text with thread LWPs, process ids and times of day normalised (see normalise())
"""

import difflib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# What differs between two runs of the same sample under gdb (ASLR is off, so the heap's and
# the libraries' addresses do not): the kernel's thread and process ids, the time of day (heap
# snapshots' "when"), and addresses on the main thread's stack, which shift with the program's
# path and environment (another checkout, pytest's variables).
UNSTABLE = [(re.compile(r"\b(LWP|process|Process) \d+"), r"\1 N"),
            (re.compile(r"\b\d\d:\d\d:\d\d\b"), "HH:MM:SS"),
            (re.compile(r"\b0x7f{7}[0-9a-f]{4}\b"), "0x7fffffff(stack)")]
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
    out = p.stdout.replace(ROOT + "/", "")
    text: list = []
    blocks = re.split(rf"{SEP}(\d+h?)\n", out)
    for tag, body in zip(blocks[1::2], blocks[2::2]):
        if tag.endswith("h"):
            continue
        body_lines = [line for line in body.splitlines() if not NOISE.match(line)]
        text.append(f"(gdb) {shown[int(tag)]}")
        text.extend(line.rstrip() for line in body_lines)
    return "\n".join(text).rstrip() + "\n"


def normalise(text: str) -> str:
    for pattern, replacement in UNSTABLE:
        text = pattern.sub(replacement, text)
    return text


def regenerate(path: str) -> "tuple[str, int]":
    """The document with every example's block replaced by a fresh run, and how many ran."""
    with open(path) as f:
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
    return "".join(out), count


def main() -> int:
    check = "--check" in sys.argv[1:]
    paths = [os.path.join(ROOT, a) if not os.path.isabs(a) else a for a in sys.argv[1:] if a != "--check"] \
        or [README]
    subprocess.run(["make", "-s", "samples"], cwd=ROOT, check=True)
    stale = 0
    for path in paths:
        new, count = regenerate(path)
        with open(path) as f:
            old = f.read()
        name = os.path.relpath(path, ROOT)
        if check:
            same = normalise(new) == normalise(old)
            stale += not same
            print(f"{name}: {count} examples; {'unchanged' if same else 'would change'}")
            if not same:
                sys.stdout.writelines(difflib.unified_diff(normalise(old).splitlines(keepends=True),
                                                           normalise(new).splitlines(keepends=True),
                                                           "committed", "regenerated", n=1))
            continue
        with open(path, "w") as f:
            f.write(new)
        print(f"{name}: {count} examples regenerated")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
