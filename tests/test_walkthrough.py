"""docs/walkthrough.md is what the samples and gdb_heap print today: every example regenerated
from a real gdb session equals the committed text, thread LWPs, process ids and times of day
aside (tools/readme_examples.py --check; `make walkthrough` rewrites it)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.gdbrun import CONFIG, ROOT, host_only

pytestmark = host_only("compares the walk-through made on this machine's glibc")

WALKTHROUGH = os.path.join(ROOT, "docs", "walkthrough.md")
# `make test-gdb` puts another release's gdb (tools/gdb-versions.sh, unpacked in .cache/gdb) first on PATH
OTHER_GDB = os.path.realpath(shutil.which("gdb") or "").startswith(os.path.realpath(os.path.join(ROOT, ".cache",
                                                                                                 "gdb")) + os.sep)


@pytest.mark.skipif(CONFIG.glibc_dir is not None or not CONFIG.symbols or CONFIG.static,
                    reason="the walk-through is the host's glibc with its debug symbols, dynamic")
@pytest.mark.skipif(OTHER_GDB, reason="the walk-through shows gdb's own output (info proc mappings' columns, its "
                                      "warnings, how it finds the tcache), as the host's gdb prints it")
def made_with() -> str:
    """The glibc and gdb the walk-through says it was made with, and this machine's."""
    with open(WALKTHROUGH) as f:
        made = re.search(r"Made with glibc (\S+) and gdb (\S+)", f.read())
    assert made, "docs/walkthrough.md says which glibc and gdb made it"
    libc = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True).stdout.split()[-1]
    gdb = subprocess.run(["gdb", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split()[-1]
    if (made.group(1), made.group(2)) == (libc, gdb):
        return ""
    return (f"made with glibc {made.group(1)} and gdb {made.group(2)}; this machine has glibc {libc} and gdb {gdb} "
            "(make walkthrough remakes it)")


def test_walkthrough_is_not_stale():
    other = made_with()
    if other:
        pytest.skip(other)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "readme_examples.py"), "--check", WALKTHROUGH],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, f"stale; run make walkthrough:\n{p.stdout[-6000:]}{p.stderr[-2000:]}"
    assert "docs/walkthrough.md: 16 examples; unchanged" in p.stdout


def test_walkthrough_is_linked_from_the_readme_first_screen():
    with open(os.path.join(ROOT, "README.md")) as f:
        first_screen = "".join(f.readlines()[:25])
    assert "(docs/walkthrough.md)" in first_screen
    with open(WALKTHROUGH) as f:
        text = f.read()
    for command in ("heap diff", "heap snapshot", "heap trace start", "heap trace", "x/8xb", "catch syscall brk",
                    "catch syscall mmap munmap", "info proc mappings"):
        assert f"(gdb) {command}" in text, command
