"""Running gdb in batch mode on a sample, for the integration tests."""

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
INIT = os.path.join(ROOT, "gdb_heap", "init.py")
PROBE = os.path.join(ROOT, "tests", "gdb_probe.py")
TIMEOUT = 300
# GDB_HEAP_GLIBC=DIR runs the samples under another glibc: DIR is one version's folder of the
# cache that ../shared/tools/glibc-matrix.sh prepares (its `info` names loader, libs, debug files).
OTHER_GLIBC = os.environ.get("GDB_HEAP_GLIBC")


def _other_glibc() -> Dict[str, str]:
    assert OTHER_GLIBC
    with open(os.path.join(OTHER_GLIBC, "info")) as f:
        info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return {k: os.path.join(os.path.abspath(OTHER_GLIBC), v) if k in ("LOADER", "LIBDIR", "DEBUGDIR") else v
            for k, v in info.items()}


GDB = ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off"]
if OTHER_GLIBC:
    GDB += ["-ex", f"set debug-file-directory {_other_glibc()['DEBUGDIR']}", "-ex", "set auto-load safe-path /"]


def host_glibc() -> str:
    """The C library's own word: `getconf GNU_LIBC_VERSION` prints "glibc 2.36" (or the
    version of the other glibc's folder, from its info file)."""
    if OTHER_GLIBC:
        return _other_glibc()["VERSION"]
    out = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in text.split(".")[:2])


def sample(name: str) -> str:
    path = os.path.join(BUILD, name)
    if not os.path.exists(path):
        subprocess.run(["make", "-s", f"build/{name}"], cwd=ROOT, check=True)
    if OTHER_GLIBC:  # the same sample, bound to the other glibc's loader and libraries
        info = _other_glibc()
        other = os.path.join(BUILD, f"glibc-{info['VERSION']}", name)
        os.makedirs(os.path.dirname(other), exist_ok=True)
        subprocess.run(["gcc", "-g", "-O0", "-pthread", "-o", other, os.path.join(ROOT, "c_samples", f"{name}.c"),
                        f"-Wl,--dynamic-linker={info['LOADER']}", f"-Wl,-rpath,{info['LIBDIR']}"], check=True)
        return other
    return path


@dataclass
class Gdb:
    """The output of one gdb session."""

    stdout: str
    stderr: str
    returncode: int


def gdb_batch(commands: Sequence[str], program: Optional[str] = None, pre: Sequence[str] = ()) -> Gdb:
    """gdb -batch with the extension sourced, then `commands` (each one -ex)."""
    argv = list(GDB)
    for c in list(pre) + [f"source {INIT}"] + list(commands):
        argv += ["-ex", c]
    if program:
        argv.append(program)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    return Gdb(p.stdout, p.stderr, p.returncode)


def probe(program: str, commands: Sequence[str] = (), args: Sequence[str] = (), *,
          chunk_for_pointers: bool = False, truth: bool = True, before_run: Sequence[str] = (),
          last_stage: Optional[int] = None, thread_tcaches: bool = False,
          arenas_truth: bool = False) -> Dict[str, Any]:
    """Run the program to each checkpoint, running `commands` there; see tests/gdb_probe.py."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_test.") as tmp:
        params: Dict[str, Any] = {
            "init": INIT, "commands": list(commands), "args": list(args), "truth": truth,
            "chunk_for_pointers": chunk_for_pointers, "before_run": list(before_run),
            "program_out": os.path.join(tmp, "program.out"), "result": os.path.join(tmp, "result.json"),
            "safe_linking": version_tuple(host_glibc()) >= (2, 32), "thread_tcaches": thread_tcaches,
            "arenas_truth": arenas_truth,
        }
        if last_stage is not None:
            params["last_stage"] = last_stage
        path = os.path.join(tmp, "params.json")
        with open(path, "w") as f:
            json.dump(params, f)
        p = subprocess.run(GDB + ["-ex", f"source {PROBE}", program], capture_output=True, text=True,
                           timeout=TIMEOUT, cwd=ROOT,
                           env=dict(os.environ, GDB_HEAP_PROBE=path, PYTHONDONTWRITEBYTECODE="1"))
        if not os.path.exists(params["result"]):
            raise AssertionError(f"gdb wrote no result:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        with open(params["result"]) as f:
            result: Dict[str, Any] = json.load(f)
        if "probe_error" in result:
            raise AssertionError(f"probe failed: {result['probe_error']}\n{p.stderr[-3000:]}")
        result["gdb_stderr"] = p.stderr
        return result


def doc(record: Dict[str, Any], command: str) -> Any:
    """The JSON document a command printed at a checkpoint (fails the test if it failed)."""
    r = record["commands"][command]
    assert r["ok"], f"{command} failed: {r['out']}"
    return json.loads(r["out"])


def facts(record: Dict[str, Any], kind: str) -> List[List[str]]:
    return [f[2:] for f in record["facts"] if f[1] == kind]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Python Exception" not in text, text


ANSI = re.compile(r"\x1b\[")
