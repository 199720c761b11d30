"""The glibc test matrix: `make matrix` = fetch, build, run, table.

  python3 tools/matrix.py fetch   other glibcs + build packages into .cache/glibc (tools/glibc-matrix.sh)
  python3 tools/matrix.py build   the samples per version and arch under build/matrix/<version>/{dynamic,static}/
                                  (and nosyms/: the static ones with libc's ELF symbols stripped)
  python3 tools/matrix.py run [CONFIG_GLOB ...]   the live suite per config, results in build/matrix/results.json

A config is VERSION[-i386]/{dynamic,static}/{symbols,nosymbols}, e.g. 2.31-i386/static/nosymbols.
Dynamic samples are compiled once per arch against the oldest sysroot (so they need nothing newer
than its symbol versions) and linked once per version with that version's loader and rpath baked
in.  Static samples are built per version against that version's libc.a.  tests/gdbrun.py picks
the config from GDB_HEAP_GLIBC / GDB_HEAP_LINK / GDB_HEAP_SYMBOLS, which `run` sets.
"""

import argparse
import fnmatch
import glob
import json
import os
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "glibc")
OUT = os.path.join(ROOT, "build", "matrix")
SAMPLES_DIR = os.path.join(ROOT, "c_samples")
SUITES = "bullseye bookworm trixie sid experimental"
CFLAGS = ["-g", "-O0", "-Wall", "-Wextra", "-pthread"]
# Debian suite that ships lib32gcc-N-dev for the host's gcc major version N.
GCC_SUITE = {"10": "bullseye", "12": "bookworm", "14": "trixie"}
# Samples that cannot apply to a build kind, with the reason printed when skipped.
NOT_APPLICABLE: Dict[str, str] = {}


def log(msg: str) -> None:
    print(f"matrix: {msg}", flush=True)


def gcc_major() -> str:
    out = subprocess.run(["gcc", "-dumpversion"], capture_output=True, text=True, check=True).stdout
    return out.strip().split(".")[0]


def extras() -> List[str]:
    """Packages the build needs beside the glibcs: 32-bit libgcc for `gcc -m32` without multilib,
    matching the host gcc; gcc 10's libgcc for static links against 2.31 (gcc 12's libgcc_eh
    needs _dl_find_object, a 2.35 symbol)."""
    major = gcc_major()
    suite = GCC_SUITE.get(major, "sid")
    return [f"lib32gcc-{major}-dev/{suite}", f"lib32gcc-s1/{suite}", "libgcc-10-dev/bullseye",
            "lib32gcc-10-dev/bullseye"]


def extra_dir(pkg: str) -> str:
    name, suite = pkg.split("/")
    return os.path.join(CACHE, "extra", f"{name}_{suite}")


# -- fetch -----------------------------------------------------------------------------------

def fetch() -> int:
    env = dict(os.environ, GLIBC_MATRIX_SUITES=os.environ.get("GLIBC_MATRIX_SUITES", SUITES),
               GLIBC_MATRIX_ARCHES="amd64 i386", GLIBC_MATRIX_DEV="1", GLIBC_MATRIX_EXTRA=" ".join(extras()))
    rc = subprocess.run(["bash", os.path.join(ROOT, "tools", "glibc-matrix.sh"), CACHE], env=env).returncode
    got = versions()
    if not got:
        log("no glibc version could be prepared; nothing to test")
        return 1
    if rc:
        log(f"some suites could not be prepared (see above); going on with {', '.join(got)}")
    return 0


def info(version: str) -> Dict[str, str]:
    path = os.path.join(CACHE, version, "info")
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def versions() -> List[str]:
    """Prepared versions, from the fetch's matrix.txt, oldest first ("2.31", "2.31-i386", ...)."""
    path = os.path.join(CACHE, "matrix.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        names = [line.split()[0] for line in f if line.strip()]
    return sorted(names, key=lambda v: (version_tuple(v), v))


def version_tuple(v: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in v.split("-")[0].split("."))


def arch_of(version: str) -> str:
    return "i386" if version.endswith("-i386") else "amd64"


# -- build -----------------------------------------------------------------------------------

def sysroot_flags(version: str, static: bool) -> List[str]:
    """gcc flags to compile and link against one version's sysroot.  Debian's gcc searches its
    own multiarch dirs before --sysroot, hence -B/-L for every dir (reference §2, §4, §5)."""
    arch = arch_of(version)
    root = os.path.join(CACHE, version, info(version)["SYSROOT"])
    tri = "i386-linux-gnu" if arch == "i386" else "x86_64-linux-gnu"
    gcc_dirs = []
    if static and version_tuple(version) < (2, 35):  # gcc 12's libgcc_eh wants _dl_find_object
        gcc_dirs.append(extra_dir("libgcc-10-dev/bullseye" if arch == "amd64" else "lib32gcc-10-dev/bullseye")
                        + ("/usr/lib/gcc/x86_64-linux-gnu/10" + ("/32" if arch == "i386" else "")))
    flags = ["-m32"] if arch == "i386" else []
    flags += [f"--sysroot={root}"]
    for d in gcc_dirs:
        flags += [f"-B{d}/", f"-L{d}"]
    flags += [f"-B{root}/usr/lib/{tri}/", f"-L{root}/usr/lib/{tri}", f"-L{root}/lib/{tri}"]
    if arch == "i386":
        major = gcc_major()
        pkg = next(e for e in extras() if e.startswith(f"lib32gcc-{major}-dev/"))
        g = extra_dir(pkg) + f"/usr/lib/gcc/x86_64-linux-gnu/{major}/32"
        s1 = extra_dir(next(e for e in extras() if e.startswith("lib32gcc-s1/")))
        flags += [f"-B{g}/", f"-L{g}", f"-L{s1}/usr/lib32", f"-L{root}/usr/lib32"]
    return flags


def run_cc(argv: List[str]) -> Optional[str]:
    p = subprocess.run(argv, capture_output=True, text=True)
    errors = [line for line in p.stderr.splitlines() if "error" in line or "cannot find" in line]
    return None if p.returncode == 0 else (errors or p.stderr.strip().splitlines() or ["failed"])[0]


def samples() -> List[str]:
    return sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(SAMPLES_DIR, "*.c")))


def strip_libc_symbols(binary: str, obj: str, out: str) -> Optional[str]:
    """A static binary with every symbol removed except the sample's own (so tests can still
    `break checkpoint`): main_arena, mp_, tcache and all of libc are nameless, as in a stripped
    build.  The sample's DWARF stays."""
    nm = subprocess.run(["nm", "--defined-only", obj], capture_output=True, text=True, check=True).stdout
    keep = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    allsyms = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    drop = {line.split()[-1] for line in allsyms.splitlines() if len(line.split()) >= 2} - keep
    listfile = out + ".strip"
    with open(listfile, "w") as f:
        f.write("\n".join(sorted(drop)) + "\n")
    args = ["objcopy", f"--strip-symbols={listfile}", binary, out]
    err = run_cc(args)
    os.unlink(listfile)
    return err


# what each needs to run to its end (corrupt: a stage whose damage glibc never notices; most abort)
SMOKE_ARGS = {"many": ["100"], "corrupt": ["overlap"], "next_step": ["free_tcache"]}

def smoke(binary: str, sample: str) -> Optional[str]:
    """Why the freshly built sample does not run to its end, or None."""
    try:
        p = subprocess.run([binary, *SMOKE_ARGS.get(sample, [])], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "hangs when run (60 s)"
    if p.returncode:
        return f"crashes when run (killed by signal {-p.returncode})" if p.returncode < 0 else (
            f"fails when run (exit status {p.returncode})")
    return None


R_386_GOT32, R_386_GOT32X = 3, 43


def _ar_members(data: bytes) -> List[Tuple[int, bytes]]:
    """(offset, bytes) of each member of an ar archive (System V/GNU layout)."""
    out, pos = [], 8
    while pos + 60 <= len(data):
        size = int(data[pos + 48:pos + 58].strip() or 0)
        out.append((pos + 60, data[pos + 60:pos + 60 + size]))
        pos += 60 + size + (size & 1)
    return out


def _pushes_via_got32x(obj: bytes) -> List[int]:
    """Offsets in `obj` (an ELF32 relocatable) of the type byte of each R_386_GOT32X that applies
    to a `push foo@GOT(reg)` (ff /6)."""
    if obj[:5] != b"\x7fELF\x01" or len(obj) < 52:
        return []
    shoff, = struct.unpack_from("<I", obj, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x2E)
    if shentsize < 40 or shoff + shnum * shentsize > len(obj):
        return []
    sections = [struct.unpack_from("<IIIIIIIIII", obj, shoff + i * shentsize) for i in range(shnum)]
    found = []
    for _, sh_type, _, _, off, size, _, target, _, _ in sections:
        if sh_type != 9 or target >= shnum:  # SHT_REL, applying to section `target`
            continue
        for rel in range(off, min(off + size, len(obj)) - 7, 8):
            r_offset, r_info = struct.unpack_from("<II", obj, rel)
            at = sections[target][4] + r_offset
            if r_info & 0xFF == R_386_GOT32X and 2 <= at <= len(obj) and obj[at - 2] == 0xFF and (
                    obj[at - 1] >> 3) & 7 == 6:
                found.append(rel + 4)
    return found


def libc_a_fixed(version: str) -> Optional[str]:
    """A folder with a copy of this i386 version's libc.a whose GOT32X pushes are plain GOT32, or
    None when it has none.  2.43+ i386 libc.a (binutils 2.45) relocates `push foo@GOT(%ebx)` with
    the relaxable R_386_GOT32X; ld 2.40 and 2.44 take any relaxable `ff /r` for a call or jmp and
    write `jmp foo` (pthread_getattr_default_np then jumps into data).  GOT32 is never relaxed,
    and the copy keeps every member's size, so its symbol index stays valid."""
    if arch_of(version) != "i386":
        return None
    folder = os.path.join(OUT, version, "libc-fixed")
    if not os.path.isdir(folder):
        libc_a = os.path.join(CACHE, version, info(version)["SYSROOT"], "usr", "lib", "i386-linux-gnu", "libc.a")
        with open(libc_a, "rb") as f:
            data = bytearray(f.read())
        patched = 0
        for start, member in _ar_members(bytes(data)):
            for at in _pushes_via_got32x(member):
                data[start + at] = R_386_GOT32
                patched += 1
        os.makedirs(folder + ".new", exist_ok=True)
        if patched:
            with open(os.path.join(folder + ".new", "libc.a"), "wb") as f:
                f.write(data)
            log(f"{version}: libc.a copied with {patched} GOT32X pushes made GOT32 (the host's ld breaks them)")
        os.replace(folder + ".new", folder)
    return folder if os.path.exists(os.path.join(folder, "libc.a")) else None


def link_static(version: str, sample: str, obj: str, out: str) -> Optional[str]:
    """Link one static sample; why it cannot be built and run, or None."""
    fixed = libc_a_fixed(version)
    err = run_cc(["gcc", *CFLAGS, "-static", *([f"-L{fixed}"] if fixed else []), *sysroot_flags(version, True),
                  "-o", out, obj])
    return err or smoke(out, sample)


def skip_note(path: str, why: str) -> None:
    """Leave the reason beside the missing binary: the tests skip with it (tests/gdbrun.py)."""
    with open(path + ".skip", "w") as f:
        f.write(why + "\n")
    if os.path.exists(path):
        os.unlink(path)


def listing(folder: str) -> str:
    return ", ".join(sorted(p for p in os.listdir(folder) if "." not in p)) or "none"


def build() -> int:
    have = versions()
    if not have:
        log("nothing fetched: run `python3 tools/matrix.py fetch` first")
        return 1
    built = 0
    for arch in ("amd64", "i386"):
        vs = [v for v in have if arch_of(v) == arch]
        if not vs:
            log(f"{arch}: no glibc fetched, skipped")
            continue
        oldest = vs[0]
        objdir = os.path.join(OUT, "obj", arch)
        os.makedirs(objdir, exist_ok=True)
        objs = {}
        for s in samples():
            obj = os.path.join(objdir, s + ".o")
            err = run_cc(["gcc", *CFLAGS, *sysroot_flags(oldest, False), "-c", "-o", obj,
                          os.path.join(SAMPLES_DIR, s + ".c")])
            if err:
                log(f"{arch}: {s} does not compile against glibc {oldest}, skipped: {err}")
                continue
            objs[s] = obj
        for v in vs:
            i = info(v)
            base = os.path.join(CACHE, v)
            loader, libdir = os.path.join(base, i["LOADER"]), os.path.join(base, i["LIBDIR"])
            for link in ("dynamic", "static", "nosyms"):
                os.makedirs(os.path.join(OUT, v, link), exist_ok=True)
            for s, obj in objs.items():
                for old in glob.glob(os.path.join(OUT, v, "*", s + ".skip")):
                    os.unlink(old)
                # dynamic: the object built on the oldest sysroot, bound to this version's loader
                out = os.path.join(OUT, v, "dynamic", s)
                err = run_cc(["gcc", *CFLAGS, *sysroot_flags(oldest, False), "-o", out, obj,
                              f"-Wl,--dynamic-linker={loader}", f"-Wl,-rpath,{libdir}"])
                err = err or smoke(out, s)
                if err:
                    log(f"{v}: dynamic {s} skipped: {err}")
                    skip_note(out, err)
                else:
                    built += 1
                # static: compiled and linked against this version's own headers and libc.a
                out = os.path.join(OUT, v, "static", s)
                sobj = out + ".o"
                err = run_cc(["gcc", *CFLAGS, *sysroot_flags(v, True), "-c", "-o", sobj,
                              os.path.join(SAMPLES_DIR, s + ".c")])
                err = err or link_static(v, s, sobj, out)
                # its copy without libc's symbols: same path length, so that the stack (argv[0])
                # and every address match between the tool's session and the truth's
                err = err or strip_libc_symbols(out, sobj, os.path.join(OUT, v, "nosyms", s))
                if err:
                    log(f"{v}: static {s} skipped: {err}")
                    for p in (out, os.path.join(OUT, v, "nosyms", s)):
                        skip_note(p, err)
                else:
                    built += 1
            log(f"{v}: dynamic: {listing(os.path.join(OUT, v, 'dynamic'))}; "
                f"static: {listing(os.path.join(OUT, v, 'static'))}")
    if not built:
        log("no sample could be built")
        return 1
    return 0


# -- run -------------------------------------------------------------------------------------

def configs() -> List[str]:
    return [f"{v}/{link}/{sym}" for v in versions() for link in ("dynamic", "static")
            for sym in ("symbols", "nosymbols")]


# The files every config runs: how malloc's state is found (symbols, or the heuristics without
# them; a static program's startup) and what that finding feeds: the views, heap check judged by
# glibc, threads, cores, mmapped chunks, non-contiguous heaps, resynchronising, mid-update, the
# trace.  The other files (predictions, snapshots, where, named links, printers, functions, the
# contract) depend on glibc's version and word size, not on how the state was found: they run
# on each version and arch's dynamic/symbols config (MATRIX_FULL=1: on every config).
LOCATING_FILES = {"tests/test_live.py", "tests/test_check.py", "tests/test_core.py", "tests/test_threads.py",
                  "tests/test_mmap.py", "tests/test_locate.py", "tests/test_noncontig.py", "tests/test_resync_live.py",
                  "tests/test_in_progress.py", "tests/test_trace.py", "tests/test_large_bins.py"}


def files_for(config: str, files: List[str]) -> List[str]:
    if config.endswith("/dynamic/symbols") or os.environ.get("MATRIX_FULL") == "1":
        return files
    return [f for f in files if f in LOCATING_FILES]


def live_test_files() -> List[str]:
    """Every test file that runs gdb on the samples (uses tests/gdbrun.py), but those whose
    subject does not depend on the glibc under test (pytestmark = host_only(...))."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py"))):
        with open(path) as f:
            text = f.read()
        if "from tests.gdbrun import" in text and "pytestmark = host_only(" not in text:
            out.append(os.path.relpath(path, ROOT))
    return out


def junit_counts(path: str) -> Dict[str, object]:
    """passed/failed/skipped/errors and the failures' first lines, from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    counts: Dict[str, object] = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failures: List[Dict[str, str]] = []
    skips: Dict[str, int] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            tag = "failure" if "failure" in kinds else "error"
            counts["failed" if tag == "failure" else "errors"] += 1  # type: ignore[operator]
            msg = (kinds[tag].get("message") or "").strip().splitlines()
            failures.append({"test": name, "kind": tag, "message": (msg[0] if msg else "")[:300]})
        elif "skipped" in kinds:
            counts["skipped"] += 1  # type: ignore[operator]
            reason = (kinds["skipped"].get("message") or "").strip()
            skips[reason] = skips.get(reason, 0) + 1
        else:
            counts["passed"] += 1  # type: ignore[operator]
    counts["failures"] = failures
    counts["skips"] = skips
    return counts


def run_config(name: str, files: List[str]) -> Dict[str, object]:
    version, link, sym = name.split("/")
    junit = os.path.join(OUT, "junit", name.replace("/", "_") + ".xml")
    os.makedirs(os.path.dirname(junit), exist_ok=True)
    env = dict(os.environ, GDB_HEAP_GLIBC=os.path.join(CACHE, version), GDB_HEAP_LINK=link,
               GDB_HEAP_SYMBOLS="1" if sym == "symbols" else "0", PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                        *files], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = round(time.monotonic() - start, 1)
    with open(os.path.join(OUT, "junit", name.replace("/", "_") + ".log"), "w") as f:
        f.write(p.stdout + p.stderr)
    result: Dict[str, object] = {"config": name, "version": version.split("-")[0], "arch": arch_of(version),
                                 "link": link, "symbols": sym == "symbols", "seconds": seconds}
    if os.path.exists(junit):
        result.update(junit_counts(junit))
    else:
        result.update(passed=0, failed=0, skipped=0, errors=1, failures=[
            {"test": "pytest", "kind": "error", "message": (p.stdout + p.stderr).strip()[-300:]}])
    return result


def run(patterns: List[str], jobs: int = 1) -> int:
    from concurrent.futures import ThreadPoolExecutor

    todo = [c for c in configs() if not patterns or any(fnmatch.fnmatch(c, pat) for pat in patterns)]
    if not todo:
        log("no config to run (fetch and build first, or check the patterns)")
        return 1
    missing = [c for c in todo if not os.path.isdir(os.path.join(OUT, c.split("/")[0], c.split("/")[1]))]
    if missing:
        log(f"not built: {', '.join(missing)}; run `python3 tools/matrix.py build`")
        return 1
    files = live_test_files()
    results_path = os.path.join(OUT, "results.json")
    results: Dict[str, object] = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f).get("configs", {})
    start = time.monotonic()
    order = {c: i for i, c in enumerate(configs())}

    def save() -> None:  # after every config: an interrupted run keeps what it measured
        doc = {"files": files, "jobs": jobs, "last_run_seconds": round(time.monotonic() - start, 1),
               "last_run_configs": todo,
               "configs": dict(sorted(results.items(), key=lambda kv: order.get(kv[0], 1 << 30)))}
        with open(results_path + ".new", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(results_path + ".new", results_path)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(lambda c: run_config(c, files_for(c, files)), todo):
            results[str(r["config"])] = r
            log(f"{r['config']}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped, "
                f"{r['errors']} errors in {r['seconds']} s")
            for fl in r["failures"]:  # type: ignore[attr-defined]
                log(f"    {fl['kind']} {fl['test']}: {fl['message'][:160]}")
            save()
    total = round(time.monotonic() - start, 1)
    log(f"{len(todo)} configs in {total} s; results in {os.path.relpath(results_path, ROOT)}")
    bad = [c for c in todo if results[c]["failed"] or results[c]["errors"]]  # type: ignore[index]
    ran = [c for c in todo if results[c]["passed"]]  # type: ignore[index]
    if not ran:
        log("no config ran any test")
        return 1
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["fetch", "build", "run"])
    ap.add_argument("configs", nargs="*", help="globs over config names (run only), e.g. '2.31*/dynamic/*'")
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("MATRIX_JOBS", "1")),
                    help="configs run at the same time (default $MATRIX_JOBS or 1)")
    a = ap.parse_intermixed_args()
    if a.step == "fetch":
        return fetch()
    if a.step == "build":
        return build()
    return run(a.configs, a.jobs)


if __name__ == "__main__":
    sys.exit(main())
