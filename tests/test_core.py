"""Core files: at a checkpoint gdb writes a core (generate-core-file); a fresh gdb loads it
(gdb PROGRAM CORE) and every command must print the same JSON as on the live process."""

import struct
import os
import tempfile
from typing import Dict, List, NamedTuple

import pytest

from gdb_heap import heuristics, registry
from tests.gdbrun import doc, facts, gdb_batch, json_doc, no_traceback, probe, sample, tool_text
from tests.synthetic import every_bin_heap

# Every command's JSON invocations from the registry (heap chunk ADDR --json: one per printed pointer).
COMMANDS = registry.every_invocation(json_only=True)
MARK = "@@gdb_heap_core@@"


def core_saved_whole(record, core: str) -> None:
    """The core gdb wrote holds the whole process, or the test is skipped (saying why)."""
    gcore = record["commands"][f"generate-core-file {core}"]
    assert gcore["ok"] and os.path.getsize(core) > 0
    lost = [line for line in gcore["out"].splitlines()
            if "Memory read failed for corefile section" in line and "0xffffffffff600000" not in line]
    if lost:  # the vsyscall page aside, gdb wrote zeros where it could not read: not the process
        pytest.skip(f"gdb's generate-core-file could not save the whole process: {len(lost)} mapping(s) "
                    "unreadable (e.g. MADV_GUARD_INSTALL guard pages, which gdb 13 cannot read)")


def live_and_core(name: str, tmp: str, text_commands: List[str]):
    core = os.path.join(tmp, "core")
    program = sample(name)
    (record,) = probe(program, COMMANDS + text_commands + [f"generate-core-file {core}"], truth=False,
                      chunk_for_pointers=True, last_stage=1)["stages"]
    core_saved_whole(record, core)
    commands = [c for c in record["commands"] if c.startswith("heap")]
    return record, on_core_file(program, core, commands)


# Each command's text as the live probe records it (tests/gdb_probe.py's run): gdb.execute's
# to_string holds what the command writes to stdout and stderr (its warnings), an error its message.
CAPTURE = """def capture(command):
    try:
        gdb.write(gdb.execute(command, to_string=True))
    except gdb.error as e:
        gdb.write(str(e))
"""


def on_core_file(program: str, core: str, commands: List[str]) -> Dict[str, str]:
    script: List[str] = [f"core-file {core}", f"python exec({CAPTURE!r})"]
    for i, command in enumerate(commands):
        script += [f"echo {MARK}{i}\\n", f"python capture({command!r})"]
    r = gdb_batch(script, program)
    no_traceback(r.stdout + r.stderr)
    out: Dict[str, str] = {}
    for piece in r.stdout.split(MARK)[1:]:
        number, _, body = piece.partition("\n")
        out[commands[int(number)]] = body
    return out


@pytest.fixture(scope="module")
def arenas():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_core.") as tmp:
        yield live_and_core("arenas", tmp, ["heap", "heap arenas", "heap bins tcache --all-threads"])


@pytest.fixture(scope="module")
def mmapped():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_core.") as tmp:
        yield live_and_core("mmapped", tmp, ["heap mmapped"])


def check_same(record, core):
    json_commands = [c for c in record["commands"] if c.startswith("heap") and c.endswith("--json")]
    assert len(json_commands) > len(COMMANDS)  # heap chunk ADDR --json for every printed pointer too
    for command in json_commands:
        live = record["commands"][command]
        assert live["ok"], f"{command} failed live: {live['out']}"
        assert command in core and core[command].strip(), f"{command} printed nothing on the core"
        assert json_doc(core[command]) == json_doc(live["out"]), command


def test_threads_core_gives_the_same_json(arenas):
    record, core = arenas
    check_same(record, core)
    # and the core really has the threads' arenas and tcaches
    a = json_doc(core["heap arenas --json"])["arenas"]
    assert len(a) == 4 and all(x["threads"] for x in a)
    bins = json_doc(core["heap bins --all-threads --json"])["bins"]
    assert len({b["thread"] for b in bins if b["kind"] == "tcache"}) == 4
    for command in ("heap", "heap arenas", "heap bins tcache --all-threads"):
        assert tool_text(core[command]) == tool_text(record["commands"][command]["out"]), command


def test_mmapped_core_gives_the_same_json(mmapped):
    record, core = mmapped
    check_same(record, core)
    found = json_doc(core["heap mmapped --json"])
    assert len(found["chunks"]) == found["glibc_count"] == int(facts(record, "n_mmaps")[-1][0])
    assert "the core file's segments" in core["heap mmapped"]
    assert tool_text(core["heap mmapped"]).splitlines()[:-1] == \
        tool_text(record["commands"]["heap mmapped"]["out"]).splitlines()[:-1]


class ElfClass(NamedTuple):
    """Where the program headers are and how one reads, for one ELF class (little-endian)."""
    word: str  # struct format of an address-sized field (e_phoff, p_filesz)
    phoff_at: int
    phnum_at: int  # offset of e_phentsize, e_phnum
    phdr: str  # struct format of a program header up to p_memsz
    vaddr: int  # index of p_vaddr, p_memsz in the unpacked header
    memsz: int
    filesz_at: int  # byte offset of p_filesz in the program header


ELF_CLASSES = {1: ElfClass("<I", 0x1C, 0x2A, "<IIIIII", 2, 5, 16),  # ELFCLASS32
               2: ElfClass("<Q", 0x20, 0x36, "<IIQQQQQ", 3, 6, 32)}  # ELFCLASS64


def drop_segment(core: str, address: int) -> None:
    """Make the core lack the mapping holding `address`, as a filtered mapping does: its
    PT_LOAD segment keeps its place but no bytes (p_filesz = 0).  ELF32 or ELF64, little-endian."""
    with open(core, "r+b") as f:
        head = f.read(64)
        assert head[:4] == b"\x7fELF" and head[4] in ELF_CLASSES and head[5] == 1, head[:6]
        elf = ELF_CLASSES[head[4]]
        phoff = struct.unpack_from(elf.word, head, elf.phoff_at)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, elf.phnum_at)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            phdr = struct.unpack(elf.phdr, f.read(struct.calcsize(elf.phdr)))
            if phdr[0] == 1 and phdr[elf.vaddr] <= address < phdr[elf.vaddr] + phdr[elf.memsz]:  # PT_LOAD
                f.seek(phoff + i * phentsize + elf.filesz_at)
                f.write(struct.pack(elf.word, 0))
                return
    raise AssertionError(f"no segment holds {address:#x}")


def test_a_core_lacking_an_mmapped_chunk_says_which_and_goes_on():
    """A core without the mapping of one mmapped chunk: the commands name what is missing and
    show the rest."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_core.") as tmp:
        core = os.path.join(tmp, "core")
        program = sample("mmapped")
        (record,) = probe(program, ["heap mmapped --json", "heap chunks --json", f"generate-core-file {core}"],
                          truth=False, last_stage=1)["stages"]
        core_saved_whole(record, core)
        m1m = next(int(a, 16) for name, a, _ in facts(record, "ptr") if name == "m1m")
        drop_segment(core, m1m)
        out = on_core_file(program, core, ["heap mmapped --json", "heap mmapped", "heap chunks --json",
                                           f"heap chunk {m1m:#x}"])
        found = json_doc(out["heap mmapped --json"])
        live = doc(record, "heap mmapped --json")
        lost = [u for u in found["unreadable"] if u["start"] <= m1m < u["end"]]
        assert len(lost) == 1 and found["glibc_count"] == live["glibc_count"] == 4
        assert found["chunks"] == [c for c in live["chunks"] if not lost[0]["start"] <= c["address"] < lost[0]["end"]]
        assert f"mapping {lost[0]['start']:#x}-{lost[0]['end']:#x} is not readable" in out["heap mmapped"]
        assert "but glibc counts 4" in out["heap mmapped"]
        assert "that memory is not readable (the process or the core file lacks it)" in out[f"heap chunk {m1m:#x}"]
        assert json_doc(out["heap chunks --json"]) == doc(record, "heap chunks --json")


def test_a_core_lacking_a_thread_arena_says_which_and_goes_on():
    """A core without one thread arena's heap (so without that arena): the arena list stops
    there and says so; the main arena's chunks are whole."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_core.") as tmp:
        threads_core = os.path.join(tmp, "threads_core")
        program = sample("arenas")
        (record,) = probe(program, ["heap arenas --json", f"generate-core-file {threads_core}"], truth=False,
                          last_stage=1)["stages"]
        core_saved_whole(record, threads_core)
        arenas = doc(record, "heap arenas --json")["arenas"]
        gone = arenas[2]
        drop_segment(threads_core, gone["heaps"][0]["start"])
        assert arenas[0]["main"]  # named by address: without libc's symbols gdb knows no main_arena
        main = f"heap chunks --arena {arenas[0]['address']:#x} --json"
        out = on_core_file(program, threads_core, ["heap arenas", "heap arenas --json", main])
        kept = json_doc(out["heap arenas --json"])["arenas"]
        assert kept == arenas[:2]  # the ring is cut where the lost arena was
        assert f"arena {gone['address']:#x} is not readable; the arena list is cut here" in out["heap arenas"]
        assert json_doc(out[main])["problems"] == []


def test_arena_ring_cut_by_a_lost_arena_still_finds_main_arena():
    """Without symbols main_arena is known by its `next` ring coming back; in a core that lacks
    a thread arena's heap the ring runs into memory the core has no bytes for, and main_arena
    is still the one candidate.  A ring into memory the process never had still rules it out."""
    _, s = every_bin_heap((2, 36), 8)
    lost = 0x7F0000000030  # an arena in a mapping the core saved without its bytes
    s.poke(s.arena + s.layout.malloc_state.offset("next"), lost)
    libc = [(s.libc_base, s.libc_base + len(s.libc_bytes))]
    s.memory.lacks = [(lost - 0x30, lost + 0x21000)]
    assert [c.address for c in heuristics.arena_candidates(s.reader(), s.layout, libc)] == [s.arena]
    s.memory.lacks = []
    assert heuristics.arena_candidates(s.reader(), s.layout, libc) == []
