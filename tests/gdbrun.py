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
TIMEOUT = int(os.environ.get("GDB_HEAP_TIMEOUT", "300"))  # seconds per gdb session
TRUTH_ATTEMPTS = 5
EMPTY_DEBUG_DIR = os.path.join(BUILD, "no-debug-files")  # `set debug-file-directory` here hides libc's symbols


@dataclass(frozen=True)
class Config:
    """The program and debug files the live tests run against, chosen by the environment:
      GDB_HEAP_GLIBC=DIR      one version's folder of the cache tools/glibc-matrix.sh prepares (its `info`
                              names loader, libs, debug files, arch); unset: the host's glibc and gcc
      GDB_HEAP_LINK=static    the static build of the samples (default dynamic)
      GDB_HEAP_SYMBOLS=0      hide libc's debug symbols from the tool (default 1); for a static build
                              this means a copy with libc's ELF symbols stripped too (libc.a has no DWARF)
    Matrix samples are prebuilt by `tools/matrix.py build` under build/matrix/VERSION/LINK/."""

    glibc_dir: Optional[str]
    info: Tuple[Tuple[str, str], ...]
    static: bool
    symbols: bool

    def get(self, key: str) -> str:
        return dict(self.info)[key]

    @property
    def version(self) -> str:
        """The upstream glibc version, "2.36" (without the folder's arch suffix)."""
        return self.get("VERSION").split("-")[0]

    @property
    def arch(self) -> str:
        return self.get("ARCH")

    @property
    def name(self) -> str:
        return f"{self.get('VERSION')}/{'static' if self.static else 'dynamic'}/{'' if self.symbols else 'no'}symbols"

    @property
    def debug_dir(self) -> str:
        """Where gdb finds libc's debug files for the truth (the host's own: /usr/lib/debug)."""
        return self.get("DEBUGDIR")

    @property
    def two_runs(self) -> bool:
        """Truth needs a second session when the tool's session has no libc types to read it by."""
        return self.static or not self.symbols


def _config() -> Config:
    glibc_dir = os.environ.get("GDB_HEAP_GLIBC")
    static = os.environ.get("GDB_HEAP_LINK", "dynamic") == "static"
    symbols = os.environ.get("GDB_HEAP_SYMBOLS", "1") != "0"
    if glibc_dir:
        with open(os.path.join(glibc_dir, "info")) as f:
            info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        info = {k: os.path.join(os.path.abspath(glibc_dir), v) if k in ("LOADER", "LIBDIR", "DEBUGDIR") else v
                for k, v in info.items()}
    else:
        out = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, check=True).stdout
        info = {"VERSION": out.split()[1], "ARCH": "amd64", "DEBUGDIR": "/usr/lib/debug"}
    return Config(glibc_dir, tuple(sorted(info.items())), static, symbols)


CONFIG = _config()
if CONFIG.static and not CONFIG.glibc_dir:
    raise SystemExit("GDB_HEAP_LINK=static needs GDB_HEAP_GLIBC (static samples come from tools/matrix.py build)")
OTHER_GLIBC = CONFIG.glibc_dir


def host_only(why: str) -> Any:
    """A test module's pytestmark when what it tests does not depend on the glibc under test (gdb's
    own features, loading, installing): it skips in a matrix config, and tools/matrix.py leaves
    the module out of the matrix altogether (it looks for this call)."""
    import pytest

    return pytest.mark.skipif(bool(OTHER_GLIBC), reason=f"host only: {why}")


def skip_if_static_startup() -> None:
    """A test of the state before the first malloc cannot apply to a static program."""
    if CONFIG.static:
        import pytest

        pytest.skip("a static program's startup (_dl_non_dynamic_init) calls malloc before main")


def _gdb(debug_dir: str) -> List[str]:
    return ["gdb", "-q", "-nx", "-batch", "-ex", "set debuginfod enabled off",
            "-ex", f"set debug-file-directory {debug_dir}", "-ex", "set auto-load safe-path /"]


os.makedirs(EMPTY_DEBUG_DIR, exist_ok=True)
GDB = _gdb(CONFIG.debug_dir if CONFIG.symbols else EMPTY_DEBUG_DIR)  # the tool's session
TRUTH_GDB = _gdb(CONFIG.debug_dir)


def host_glibc() -> str:
    """The glibc version under test: the host's (`getconf GNU_LIBC_VERSION` prints "glibc 2.36")
    or the matrix folder's upstream version."""
    return CONFIG.version


def version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in text.split(".")[:2])


def _matrix_sample(name: str, stripped: bool) -> str:
    link = ("nosyms" if stripped else "static") if CONFIG.static else "dynamic"
    path = os.path.join(BUILD, "matrix", CONFIG.get("VERSION"), link, name)
    if not os.path.exists(path):
        import pytest  # only the tests get here

        why = "tools/matrix.py build said why"
        if os.path.exists(path + ".skip"):
            with open(path + ".skip") as f:
                why = f.read().strip()
        pytest.skip(f"{name} is not built for {CONFIG.name}: {why}")
    return path


def sample(name: str) -> str:
    """The sample the tool runs on (for static no-symbols: libc's ELF symbols stripped)."""
    if OTHER_GLIBC:
        return _matrix_sample(name, CONFIG.static and not CONFIG.symbols)
    path = os.path.join(BUILD, name)
    if not os.path.exists(path):
        subprocess.run(["make", "-s", f"build/{name}"], cwd=ROOT, check=True)
    return path


def truth_sample(program: str) -> str:
    """The same program with its symbols (the stripped static copy's original)."""
    folder, name = os.path.split(program)
    return os.path.join(os.path.dirname(folder), "static", name) if os.path.basename(folder) == "nosyms" else program


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
    """Run the program to each checkpoint, running `commands` there; see tests/gdb_probe.py.
    When the tool's session cannot read the truth (libc symbols hidden, or a static program),
    a second session with debug files reads it; gdb turns ASLR off, so both see the same
    addresses (checked by the sample's printed facts)."""
    params: Dict[str, Any] = {
        "commands": list(commands), "args": list(args), "truth": truth and not CONFIG.two_runs,
        "chunk_for_pointers": chunk_for_pointers, "before_run": list(before_run),
        "safe_linking": version_tuple(host_glibc()) >= (2, 32), "thread_tcaches": thread_tcaches,
        "static": CONFIG.static, "arenas_truth": arenas_truth,
    }
    if last_stage is not None:
        params["last_stage"] = last_stage
    result = _probe_session(GDB, program, params)
    if truth and CONFIG.two_runs:
        tparams = dict(params, commands=[], chunk_for_pointers=False, before_run=[], truth=True)
        if CONFIG.static:
            tparams["types_file"] = _libc_debug_file()
            tparams["types_offset"] = TYPES_OFFSET
        for attempt in range(TRUTH_ATTEMPTS):
            other = _probe_session(TRUTH_GDB, truth_sample(program), tparams)
            if [r["stage"] for r in other["stages"]] != [r["stage"] for r in result["stages"]]:
                raise AssertionError("the truth session stopped at other checkpoints than the tool's")
            differ = [(m, t) for m, t in zip(result["stages"], other["stages"])
                      if _addresses(m["facts"]) != _addresses(t["facts"])]
            if not differ:
                break
            if attempt == TRUTH_ATTEMPTS - 1:  # threads race for the main arena: try again, then give up
                m, t = differ[0]
                raise AssertionError(f"the truth session saw other addresses at checkpoint {m['stage']}, "
                                     f"{TRUTH_ATTEMPTS} times (ASLR on? threads racing?):\n{m['facts']}\n{t['facts']}")
        for mine, theirs in zip(result["stages"], other["stages"]):
            mine["truth"] = _with_my_lwps(theirs["truth"], mine["facts"], theirs["facts"])
        result["gdb_stderr"] += other["gdb_stderr"]
    return result


def _addresses(facts: List[List[str]]) -> Tuple[List[Tuple[str, ...]], List[str]]:
    """What must match between two sessions: every fact, with the pointers' names dropped
    (threads could race for their names and arenas, not for the addresses the arenas hand out)."""
    ptrs = {f[2]: f[3] for f in facts if f[1] == "ptr"}
    plain = sorted(tuple(f[1:]) if f[1] != "ptr" else (f[1],) + tuple(f[3:]) for f in facts
                   if f[1] not in ("free",) + LWP_FACTS)  # a thread's LWP differs in every run
    return plain, sorted(ptrs.get(f[2], f[2]) for f in facts if f[1] == "free")


LWP_FACTS = ("tid", "lwp")  # "@ lwp WORKER LWP": the kernel's thread id, new in every run


def _with_my_lwps(truth: Dict[str, Any], mine: List[List[str]], theirs: List[List[str]]) -> Dict[str, Any]:
    """The truth session's per-thread records, with each LWP replaced by the tool session's LWP
    of the same worker (the sample names each worker's LWP in both)."""
    if not truth or "threads" not in truth or "error" in truth["threads"]:
        return truth
    lwps = {f[2]: f[3] for f in mine if f[1] in LWP_FACTS}
    to_mine = {int(f[3]): int(lwps[f[2]]) for f in theirs if f[1] in LWP_FACTS and f[2] in lwps}
    threads = {n: dict(t, lwp=to_mine.get(t["lwp"], t["lwp"])) if "lwp" in t else t
               for n, t in truth["threads"].items()}
    return dict(truth, threads=threads)


TYPES_OFFSET = 0x60000000 if CONFIG.arch == "i386" else 0x500000000000  # libc's debug file, out of the way


def libc_types_commands() -> List[str]:
    """gdb commands that give a static program's session glibc's types (libc.a has no DWARF):
    the same glibc's debug file, loaded where it overlaps nothing.  Name its variables by address
    (`*(struct malloc_state *) ADDR`): its own symbols point into the offset copy."""
    return [f"add-symbol-file {_libc_debug_file()} -o {TYPES_OFFSET:#x}"] if CONFIG.static else []


def _libc_debug_file() -> str:
    bid = CONFIG.get("LIBC_BUILD_ID")
    return os.path.join(CONFIG.debug_dir, ".build-id", bid[:2], bid[2:] + ".debug")


def _probe_session(gdb: List[str], program: str, params: Dict[str, Any]) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gdb_heap_test.") as tmp:
        params = dict(params, init=INIT, program_out=os.path.join(tmp, "program.out"),
                      result=os.path.join(tmp, "result.json"))
        path = os.path.join(tmp, "params.json")
        with open(path, "w") as f:
            json.dump(params, f)
        p = subprocess.run(gdb + ["-ex", f"source {PROBE}", program], capture_output=True, text=True,
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


# Lines gdb itself prints around or inside a command's output: its warnings (gdb 16 warns, per
# thread, that a core's `.reg-xstate` note is too small, the first time a command reads the
# registers), breakpoints, thread and inferior events. The tool's own warnings start "heap: ".
GDB_OWN = re.compile(r"warning: |Breakpoint \d+ at |\[New |\[Thread |\[Inferior |Using host libthread_db"
                     r"|Core was generated |Program terminated |Download failed")


def tool_text(text: str) -> str:
    """What a command printed, without the lines gdb printed around or inside it."""
    return "".join(line for line in text.splitlines(keepends=True) if not GDB_OWN.match(line))


def json_docs(text: str) -> List[Any]:
    """Every JSON document in a session's or a command's output, in order: each is one line of
    its own (every document is an object, printed on one line), whatever gdb or the program printed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def json_doc(text: str) -> Any:
    """The one JSON document a command printed (the test fails if there is not exactly one)."""
    docs = json_docs(text)
    assert len(docs) == 1, f"expected one JSON document, found {len(docs)} in:\n{text[:3000]}"
    return docs[0]


def doc(record: Dict[str, Any], command: str) -> Any:
    """The JSON document a command printed at a checkpoint (fails the test if it failed)."""
    r = record["commands"][command]
    assert r["ok"], f"{command} failed: {r['out']}"
    return json_doc(r["out"])


def facts(record: Dict[str, Any], kind: str) -> List[List[str]]:
    return [f[2:] for f in record["facts"] if f[1] == kind]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Python Exception" not in text, text


ANSI = re.compile(r"\x1b\[")
