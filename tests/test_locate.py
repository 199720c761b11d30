"""Finding malloc's state on this machine's glibc without debug symbols, in static programs and
in programs that do not use glibc: each checked against gdb's own reading of the debug info
(in a second run: gdb turns address randomisation off, so both runs see the same addresses),
`nm`'s symbol table, or the programs' printed pointers."""

import os
import re
import shutil
import subprocess
from typing import Dict, List, Set

import pytest

from tests.gdbrun import OTHER_GLIBC, ROOT, gdb_batch, json_docs, no_traceback, sample

pytestmark = pytest.mark.skipif(bool(OTHER_GLIBC), reason="uses this machine's own glibc and compilers")

HIDDEN = ["set debug-file-directory /nonexistent"]  # before the program loads: no libc debug info
PROGRAMS = os.path.join(ROOT, "tests", "programs")


def at_checkpoint(program, commands, pre=(), breakpoint="break checkpoint"):
    out = gdb_batch([breakpoint, "run > /dev/null"] + list(commands), program, pre=pre)
    no_traceback(out.stdout + out.stderr)
    return out



def without_lwps(doc):
    """The documents minus the threads' LWPs, which the kernel numbers afresh in every run."""
    if isinstance(doc, dict):
        return {k: without_lwps(v) for k, v in doc.items() if k != "lwp"}
    if isinstance(doc, list):
        return [without_lwps(v) for v in doc]
    return doc


def hexes(pattern, text):
    return [int(x, 16) for x in re.findall(pattern, text)]


@pytest.fixture(scope="module")
def static_build(tmp_path_factory):
    """all_bins linked statically (ELF symbols, no libc debug info) and a stripped copy."""
    d = tmp_path_factory.mktemp("static")
    program = str(d / "all_bins")
    built = subprocess.run(["gcc", "-g", "-O0", "-static", "-pthread", "-o", program,
                            os.path.join(ROOT, "c_samples", "all_bins.c")], capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"no static glibc here (libc.a): {built.stderr.strip()[:200]}")
    subprocess.run(["strip", "-o", program + ".stripped", program], check=True)
    nm = subprocess.run(["nm", program], capture_output=True, text=True, check=True).stdout
    symbols = {parts[2]: int(parts[0], 16) for parts in (line.split() for line in nm.splitlines()) if len(parts) == 3}
    return program, symbols


# -- a dynamic program, libc without debug info ------------------------------------------------

def test_without_symbols_the_heuristic_finds_what_debug_info_says(tmp_path):
    program = sample("threads")
    truth = at_checkpoint(program, ["p/x (long)&main_arena", "p/x (long)&mp_"] +
                          [c for n in (1, 2, 3, 4) for c in (f"thread {n}", "p/x (long)tcache")])
    arena, mp, *tcaches = hexes(r"\$\d+ = (0x[0-9a-f]+)", truth.stdout)
    printed = tmp_path / "threads.out"
    per_thread = [c for n in (1, 2, 3, 4) for c in ("echo @@\\n", f"thread {n}", "heap bins tcache --json",
                                                    "heap bins tcache")]
    out = gdb_batch(["break checkpoint", f"run > {printed}", "heap --json", "heap"] + per_thread, program,
                    pre=HIDDEN)
    no_traceback(out.stdout + out.stderr)
    overview = json_docs(out.stdout)[0]
    assert overview["located_by"].startswith("heuristic: main_arena by its self-pointing bins")
    assert overview["arenas"][0]["address"] == arena and overview["arenas"][0]["main"]
    assert re.search(rf"main_arena {arena:#x}, mp_ {mp:#x}\)", out.stdout)
    assert len(overview["arenas"]) == 4  # main + one per worker, found through `next`
    assert "tcache found by heuristic: the TLS word next to thread_arena" in out.stdout
    # The sample prints each worker's LWP and the pointers it freed (each into its own tcache).
    lines = [line.split() for line in printed.read_text().splitlines() if line.startswith("@ ")]
    worker_of = {int(f[3]): f[2] for f in lines if f[1] == "tid"}
    pointer = {f[2]: int(f[3], 16) for f in lines if f[1] == "ptr"}
    freed: Dict[str, Set[int]] = {}
    for f in lines:
        if f[1] == "free":
            freed.setdefault(f[2].split("_")[0], set()).add(pointer[f[2]])
    assert len(worker_of) == 3
    for section, want in zip(out.stdout.split("@@\n")[1:], tcaches):
        lwp = int(re.findall(r"\(LWP (\d+)\)", section)[0])
        entries = {c + 16 for b in json_docs(section)[0]["bins"] for c in b["chunks"]}  # user pointers
        # Each thread's tcache, found by the TLS scan, is the one gdb reads through debug info,
        # and holds exactly what that thread freed.
        assert entries == freed.get(worker_of.get(lwp, "main"), set())
        got = hexes(r"\(tcache_perthread_struct at (0x[0-9a-f]+)\)", section)
        assert got == [want] or (got == [] and not entries)  # an empty tcache prints no header


def test_without_symbols_every_command_gives_the_same_json():
    program = sample("all_bins")
    commands = ["heap chunks --json", "heap bins --json", "heap top --json", "heap arenas --json",
                "heap chunks --summary --json"]
    with_symbols = without_lwps(json_docs(at_checkpoint(program, commands).stdout))
    without = without_lwps(json_docs(at_checkpoint(program, commands, pre=HIDDEN).stdout))
    assert len(with_symbols) == len(commands) and without == with_symbols


def test_before_the_first_malloc_without_symbols():
    out = at_checkpoint(sample("first_malloc"), ["heap", "heap chunks --json"], pre=HIDDEN)
    assert "the heap is not initialised yet" in out.stdout
    assert "main_arena by its static initialiser" in out.stdout
    assert json_docs(out.stdout)[0]["chunks"] == []


def test_set_heap_main_arena_overrides_the_search():
    program = sample("all_bins")
    arena = hexes(r"\$1 = (0x[0-9a-f]+)", at_checkpoint(program, ["p/x (long)&main_arena"]).stdout)[0]
    out = at_checkpoint(program, [f"set heap main-arena {arena:#x}", "show heap main-arena", "heap --json"],
                        pre=HIDDEN)
    assert f"main_arena: {arena:#x}" in out.stdout
    overview = json_docs(out.stdout)[0]
    assert overview["arenas"][0]["address"] == arena
    assert overview["located_by"].startswith("set heap main-arena")
    bad = at_checkpoint(program, ["set heap main-arena 0x10", "heap"], pre=HIDDEN)
    assert "heap: cannot read 0x10 (the main_arena address); check the address or `set heap main-arena`" in bad.stderr


# -- static programs -------------------------------------------------------------------------

def test_static_with_elf_symbols(static_build):
    program, symbols = static_build
    out = at_checkpoint(program, ["heap --json", "heap"])
    overview = json_docs(out.stdout)[0]
    assert overview["glibc"] is None  # a static program carries no version string
    assert overview["located_by"] == "ELF symbols"
    assert overview["arenas"][0]["address"] == symbols["main_arena"]
    assert f"mp_ {symbols['mp_']:#x}" in out.stdout
    assert "memory matches glibc 2." in out.stderr + out.stdout


def test_static_stripped_matches_static_with_symbols(static_build):
    program, symbols = static_build
    stop = f"break *{symbols['checkpoint']:#x}"  # strip keeps the code where it was
    commands = ["heap --json", "heap chunks --json", "heap bins --json", "heap top --json", "heap"]
    known = at_checkpoint(program, commands, breakpoint=stop)
    found = at_checkpoint(program + ".stripped", commands, breakpoint=stop)
    a, b = without_lwps(json_docs(known.stdout)), without_lwps(json_docs(found.stdout))
    assert b[0]["located_by"] == "heuristic: main_arena by its self-pointing bins, mp_ by its sbrk_base in " \
                                 "all_bins.stripped's data"
    assert f"mp_ {symbols['mp_']:#x}" in found.stdout
    a[0].pop("located_by"), b[0].pop("located_by")
    assert a == b and len(b) == 4
    assert b[2]["bins"] and any(x["kind"] == "tcache" for x in b[2]["bins"])


# -- not glibc -------------------------------------------------------------------------------

MUSL_PACKAGES = {"musl": "musl/bookworm", "dev": "musl-dev/bookworm"}  # the loader+libc; headers, crt, libc.a


def musl_compiler(tmp_path) -> List[str]:
    """gcc with musl's specs: musl-gcc where installed, else Debian's musl packages unpacked into
    .cache/musl by tools/glibc-matrix.sh (no root) and musl-gcc's specs rewritten to point there."""
    if shutil.which("musl-gcc"):
        return ["musl-gcc"]
    cache = os.path.join(ROOT, ".cache", "musl")
    got = subprocess.run(["bash", os.path.join(ROOT, "tools", "glibc-matrix.sh"), cache], capture_output=True,
                         text=True, env=dict(os.environ, GLIBC_MATRIX_SUITES=" ",  # no glibc: the extras only
                                             GLIBC_MATRIX_EXTRA=" ".join(MUSL_PACKAGES.values())))
    if got.returncode:
        pytest.skip(f"musl-gcc is not installed and Debian's musl could not be fetched: {got.stderr.strip()[-300:]}")
    tree = {k: os.path.join(cache, "extra", v.replace("/", "_")) for k, v in MUSL_PACKAGES.items()}
    triplet = "x86_64-linux-musl"
    with open(os.path.join(tree["dev"], "usr", "lib", triplet, "musl-gcc.specs")) as f:
        specs = f.read()
    for path, key in ((f"/usr/include/{triplet}", "dev"), (f"/usr/lib/{triplet}", "dev"),
                      ("/lib/ld-musl-x86_64.so.1", "musl")):
        specs = specs.replace(path, tree[key] + path)
    specs = specs.replace("*link_libgcc:\n", f"*link_libgcc:\n-L{tree['musl']}/lib/{triplet} ")
    (tmp_path / "musl-gcc.specs").write_text(specs)
    return ["gcc", "-specs", str(tmp_path / "musl-gcc.specs")]


def test_musl_is_named(tmp_path):
    cc = musl_compiler(tmp_path)
    for flags in ([], ["-static"]):
        program = str(tmp_path / ("plain" + "".join(flags)))
        subprocess.run([*cc, "-g", *flags, "-o", program, os.path.join(PROGRAMS, "plain_malloc.c")], check=True)
        assert subprocess.run([program], capture_output=True).returncode == 0  # it really runs on musl
        out = at_checkpoint(program, ["heap"])
        assert "heap: this program uses musl's malloc, not glibc's" in out.stderr, out.stderr


def test_program_without_a_c_library(tmp_path):
    program = str(tmp_path / "no_libc")
    built = subprocess.run(["gcc", "-g", "-static", "-nostdlib", "-o", program, os.path.join(PROGRAMS, "no_libc.c")],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"cannot build a libc-free program here: {built.stderr.strip()[:200]}")
    out = at_checkpoint(program, ["heap"])
    assert re.search(r"heap: no main_arena found in no_libc's data: the program may not use glibc's malloc.*"
                     r"set heap main-arena ADDR", out.stderr), out.stderr


# -- a glibc newer than the table ------------------------------------------------------------

@pytest.fixture(scope="module")
def newer_libc(tmp_path_factory):
    """This machine's libc with its banner saying 2.99: a version newer than any row."""
    libc = subprocess.run(["gcc", "-print-file-name=libc.so.6"], capture_output=True, text=True).stdout.strip()
    data = bytearray(open(os.path.realpath(libc), "rb").read())
    found = re.search(rb"release version (\d+\.\d+)", data)
    if not found:
        pytest.skip("this machine's libc has no banner to change")
    data[found.start(1):found.end(1)] = b"2.99"[:len(found.group(1))].ljust(len(found.group(1)), b"9")
    d = tmp_path_factory.mktemp("newer")
    (d / "libc.so.6").write_bytes(bytes(data))
    return str(d)


@pytest.mark.parametrize("pre", [[], HIDDEN], ids=["symbols", "no-symbols"])
def test_newer_glibc_is_read_with_the_layout_memory_matches(newer_libc, pre):
    program = sample("all_bins")
    commands = ["heap chunks --json", "heap bins --json", "heap --json", "heap"]
    same = json_docs(at_checkpoint(program, commands[:2]).stdout)
    out = at_checkpoint(program, commands, pre=list(pre) + [f"set environment LD_LIBRARY_PATH={newer_libc}"])
    docs = json_docs(out.stdout)
    assert docs[2]["glibc"] == "2.99"

    def shape(chunks, bins):  # libc loads elsewhere from another folder: compare all but addresses
        return ([(c["size"], c["state"], c["bin"], c["bin_index"]) for c in chunks["chunks"]],
                [(b["kind"], b["index"], b["size"], b["count"]) for b in bins["bins"]])
    assert shape(*docs[:2]) == shape(*same) and len(same[0]["chunks"]) > 100
    warning = "glibc 2.99 is newer than any version this tool was tested on; memory matches glibc"
    assert out.stderr.count(f"heap: warning: {warning}") == 1  # once, however many commands
    assert warning in out.stdout  # and in the overview
