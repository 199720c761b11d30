"""Programs that allocate with another allocator: the tool names it (by the symbol it found) and
says glibc's heap is not in use, and still shows glibc's heap where the program has one.

Truth: the symbol is in the program (`nm`), the pointers the program prints, and gdb's own
reading of main_arena through glibc's debug info."""

import json
import os
import re
import subprocess

import pytest

from tests.gdbrun import OTHER_GLIBC, ROOT, gdb_batch, no_traceback

pytestmark = pytest.mark.skipif(bool(OTHER_GLIBC), reason="builds with this machine's compilers")

SOURCE = os.path.join(ROOT, "tests", "programs", "other_allocator.c")


def build(tmp_path, entry, extra=()):
    program = str(tmp_path / entry)
    subprocess.run(["gcc", "-g", "-O0", f"-DENTRY={entry}", *extra, "-o", program, SOURCE], check=True)
    assert entry in subprocess.run(["nm", program], capture_output=True, text=True, check=True).stdout
    return program


@pytest.mark.parametrize("entry,name", [("je_malloc", "jemalloc"), ("mallocx", "jemalloc"),
                                        ("tc_malloc", "tcmalloc"), ("mi_malloc", "mimalloc")])
def test_named_and_glibcs_heap_still_shown(tmp_path, entry, name):
    program = build(tmp_path, entry)
    out = gdb_batch(["break checkpoint", f"run > {tmp_path / 'out'}", "heap", "heap --json", "heap chunks --json",
                     "p/x (unsigned long)&main_arena"], program)
    no_traceback(out.stdout + out.stderr)
    note = f"this program allocates with {name} ({entry}), not glibc's malloc: glibc's heap is not in use"
    assert note in out.stdout
    docs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    arena = int(re.findall(r"\$1 = (0x[0-9a-f]+)", out.stdout)[0], 16)
    assert docs[0]["arenas"][0]["address"] == arena
    printed = [int(x, 16) for x in re.findall(r"@ ptr \w+ (0x[0-9a-f]+)", (tmp_path / "out").read_text())]
    users = {c["user_address"] for c in docs[1]["chunks"] if c["state"] == "in_use"}
    assert len(printed) == 2 and set(printed) <= users  # glibc's heap, as the program made it


def test_glibc_only_program_has_no_such_note(tmp_path):
    program = build(tmp_path, "plain_entry")
    out = gdb_batch(["break checkpoint", "run > /dev/null", "heap"], program)
    assert "this program allocates with" not in out.stdout + out.stderr and "main arena" in out.stdout


def test_asan(tmp_path):
    """A real ASan build: its runtime replaces malloc, so glibc's malloc is never called."""
    program = str(tmp_path / "asan")
    built = subprocess.run(["gcc", "-g", "-O0", "-fsanitize=address", "-DENTRY=plain_entry", "-o", program, SOURCE],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"gcc cannot build with -fsanitize=address here: {built.stderr.strip()[:200]}")
    out = gdb_batch(["break checkpoint", "run > /dev/null", "heap", "heap chunks"], program)
    no_traceback(out.stdout + out.stderr)
    if "Breakpoint 1, checkpoint" not in out.stdout:
        pytest.skip(f"the ASan program did not run under gdb here: {out.stdout[-300:]} {out.stderr[-300:]}")
    assert "this program allocates with AddressSanitizer's allocator (ASan) (__asan_init)" in out.stdout
    assert "glibc's heap is not in use" in out.stderr + out.stdout
