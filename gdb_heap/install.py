"""Add gdb_heap to every gdb session of the user, or take it out again:

    python3 -m gdb_heap.install            # adds `source .../gdb_heap/init.py` to ~/.gdbinit
    python3 -m gdb_heap.install --remove   # removes that line

Idempotent: the line is added once, whatever the number of runs, and it names this copy of
the package (a checkout or a pip-installed one).  Plain Python: gdb is not needed to run it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

MARKER = "# gdb_heap: added by python3 -m gdb_heap.install (--remove takes it out)"


def init_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.py")


def without_ours(lines: List[str]) -> List[str]:
    """The lines without gdb_heap's: each marker and the source line after it (gdb's source
    takes no trailing comment, so the marker has a line of its own)."""
    kept: List[str] = []
    skip = False
    for line in lines:
        if line == MARKER:
            skip = True
        elif skip and line.startswith("source ") and line.endswith("init.py"):
            skip = False
        else:
            kept.append(line)
            skip = False
    return kept


def _read(gdbinit: str) -> List[str]:
    try:
        with open(gdbinit) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _write(gdbinit: str, lines: List[str]) -> None:
    with open(gdbinit, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def install(gdbinit: str) -> str:
    before = _read(gdbinit)
    lines = without_ours(before) + [MARKER, f"source {init_path()}"]  # another copy's line goes
    if lines == before:
        return f"{gdbinit} already sources {init_path()}"
    _write(gdbinit, lines)
    return f"{gdbinit}: added `source {init_path()}`; every gdb session now has the heap commands"


def remove(gdbinit: str) -> str:
    before = _read(gdbinit)
    lines = without_ours(before)
    if lines == before:
        return f"{gdbinit} has no line of gdb_heap's; nothing to remove"
    _write(gdbinit, lines)
    return f"{gdbinit}: removed gdb_heap's line"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m gdb_heap.install", description=__doc__.splitlines()[0])
    parser.add_argument("--remove", action="store_true", help="take gdb_heap's line out again")
    parser.add_argument("--gdbinit", default=os.path.join(os.path.expanduser("~"), ".gdbinit"),
                        help="the file to change (default: ~/.gdbinit)")
    args = parser.parse_args(argv)
    try:
        print(remove(args.gdbinit) if args.remove else install(args.gdbinit))
    except OSError as e:
        print(f"gdb_heap.install: cannot change {args.gdbinit} ({e.strerror}); give another with --gdbinit",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
