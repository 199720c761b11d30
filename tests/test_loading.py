"""Loading the extension every way gdb can run a file: the prompt, -ex, -x, ~/.gdbinit, a
sourced gdb script and gdb.execute("source ...") in a sourced Python script.

Each run starts in a directory of its own (not the repository: nothing there to import from),
stops all_bins at its checkpoint and asks `heap top --json`; the truth is gdb's own reading of
main_arena.top through glibc's debug info, printed in the same session."""

import json
import os
import re
import subprocess

import pytest

from tests.gdbrun import INIT, OTHER_GLIBC, TIMEOUT, no_traceback, sample

pytestmark = pytest.mark.skipif(bool(OTHER_GLIBC), reason="loads the extension the ways a user does, on this "
                                                        "machine's gdb and glibc")

AFTER = ["set debuginfod enabled off", "break checkpoint", "run > /dev/null", "heap top --json",
         "p/x (unsigned long)main_arena.top"]


def run_gdb(tmp_path, argv, stdin=None, home=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(home or tmp_path), PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path, env=env)
    no_traceback(p.stdout + p.stderr)
    assert "ModuleNotFoundError" not in p.stderr and "Undefined command" not in p.stderr, p.stderr
    # at the prompt, gdb's "(gdb) " prompts come first on the line
    top = json.loads(next(line[line.index("{"):] for line in p.stdout.splitlines() if '{"' in line))
    truth = int(re.findall(r"\$1 = (0x[0-9a-f]+)", p.stdout)[0], 16)
    assert top["address"] == truth and truth != 0
    return p


def batch(*options):
    return ["gdb", "-q", "-batch", *options]


def commands(lines):
    return [a for c in lines for a in ("-ex", c)]


def test_from_ex(tmp_path):
    run_gdb(tmp_path, batch("-nx", *commands([f"source {INIT}"] + AFTER), sample("all_bins")))


def test_from_x(tmp_path):
    run_gdb(tmp_path, batch("-nx", "-x", INIT, *commands(AFTER), sample("all_bins")))


def test_from_the_prompt(tmp_path):
    """gdb reading its commands from stdin, as typed at the prompt."""
    typed = "\n".join([f"source {INIT}"] + AFTER + ["quit"]) + "\n"
    run_gdb(tmp_path, ["gdb", "-q", "-nx", sample("all_bins")], stdin=typed)


def test_from_gdbinit(tmp_path):
    """~/.gdbinit (HOME is a fresh directory; gdb runs without -nx, so it reads it)."""
    (tmp_path / ".gdbinit").write_text(f"source {INIT}\n")
    run_gdb(tmp_path, batch(*commands(AFTER), sample("all_bins")))


def test_from_a_sourced_gdb_script(tmp_path):
    (tmp_path / "load.gdb").write_text(f"source {INIT}\n")
    run_gdb(tmp_path, batch("-nx", *commands(["source load.gdb"] + AFTER), sample("all_bins")))


def test_from_a_sourced_python_script(tmp_path):
    """gdb sets __file__ to the outer script for the file a gdb.execute("source") runs."""
    (tmp_path / "load.py").write_text(f"import gdb\ngdb.execute('source {INIT}')\n")
    run_gdb(tmp_path, batch("-nx", *commands(["source load.py"] + AFTER), sample("all_bins")))
    run_gdb(tmp_path, batch("-nx", "-x", str(tmp_path / "load.py"), *commands(AFTER), sample("all_bins")))


def test_from_a_python_script_by_a_relative_path(tmp_path):
    """The path gdb.execute gives may be relative to gdb's working directory."""
    link = tmp_path / "gdb_heap_checkout"
    link.symlink_to(os.path.dirname(os.path.dirname(INIT)))
    (tmp_path / "load.py").write_text("import gdb\ngdb.execute('source gdb_heap_checkout/gdb_heap/init.py')\n")
    run_gdb(tmp_path, batch("-nx", *commands(["source load.py"] + AFTER), sample("all_bins")))
