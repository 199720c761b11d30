"""The one-line install (python3 -m gdb_heap.install) with HOME in a temporary folder, and the
package that `pip install` builds, as gdb sees them.  The host's gdb and no sample: host only,
not one of the glibc matrix's live tests."""

import os
import subprocess
import sys
import tempfile

import pytest

from tests.gdbrun import host_only

pytestmark = host_only("installs the package and edits ~/.gdbinit")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GDB = ["gdb", "-q", "-batch", "-ex", "set debuginfod enabled off"]  # no -nx: ~/.gdbinit is the point


def run(argv, home, **env):
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, HOME=home, PYTHONDONTWRITEBYTECODE="1", **env))


def test_install_is_idempotent_and_removable():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_home.") as home:
        gdbinit = os.path.join(home, ".gdbinit")
        with open(gdbinit, "w") as f:
            f.write("set history save on\n")  # the user's own line stays
        for _ in range(2):
            r = run([sys.executable, "-m", "gdb_heap.install"], home)
            assert r.returncode == 0, r.stderr
        with open(gdbinit) as f:
            lines = f.read().splitlines()
        assert lines[0] == "set history save on"
        assert lines[1].startswith("# gdb_heap")
        assert lines[2:] == [f"source {os.path.join(ROOT, 'gdb_heap', 'init.py')}"]
        g = run(GDB + ["-ex", "help heap", "-ex", "info pretty-printer"], home)
        assert "Show glibc malloc's heap" in g.stdout and "gdb_heap" in g.stdout, g.stderr
        r = run([sys.executable, "-m", "gdb_heap.install", "--remove"], home)
        assert r.returncode == 0 and "removed" in r.stdout
        with open(gdbinit) as f:
            assert f.read() == "set history save on\n"
        g = run(GDB + ["-ex", "help heap"], home)
        assert 'Undefined command: "heap"' in g.stderr


def test_pip_package_is_found_by_gdb():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_pip.") as target:
        r = run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", target,
                 ROOT], target)
        if r.returncode != 0 and ("setuptools" in r.stderr and "No matching distribution" in r.stderr
                                  or "Could not fetch" in r.stderr or "connection" in r.stderr.lower()):
            pytest.skip(f"pip cannot fetch the build backend (setuptools) here: {r.stderr.strip()[-200:]}")
        assert r.returncode == 0, r.stderr
        assert os.path.isfile(os.path.join(target, "gdb_heap", "init.py"))
        # gdb's Python finds an installed package on its sys.path (PYTHONPATH here, as for a venv).
        with tempfile.TemporaryDirectory() as home:
            g = run(GDB + ["-nx", "-ex", "python import gdb_heap.init; print(gdb_heap.init.__file__)",
                           "-ex", "help function heap_is_free"], home, PYTHONPATH=target)
        assert g.stdout.splitlines()[0] == os.path.join(target, "gdb_heap", "init.py"), g.stdout + g.stderr
        assert "$heap_is_free" in g.stdout
