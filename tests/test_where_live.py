"""heap where and heap layout in a live process (threads.c at its checkpoint), against truth
from outside the tool: gdb's own `p &main_arena.bins[4]`, `p &tcache->entries[3]`, `info
symbol`, `info proc mappings`, each thread's $sp, and the pointers the sample prints."""

from __future__ import annotations

import re

import pytest

from tests.gdbrun import CONFIG, gdb_batch, json_doc, no_traceback, sample, tool_text

pytestmark = pytest.mark.skipif(CONFIG.glibc_dir is not None or not CONFIG.symbols,
                                reason="reads the truth through this machine's glibc debug info")

MARK = "@@@"
HEAP_MAX_SIZE = 64 * 1024 * 1024  # 2 * DEFAULT_MMAP_THRESHOLD_MAX on x86-64: 2 * 4 MiB * sizeof(long)


def session(commands, tmp_path, program="threads"):
    """Each command's output, in order (gdb -batch at the sample's checkpoint)."""
    out = tmp_path / "program.out"
    steps = ["break checkpoint", f"run > {out}"]
    for c in commands:
        steps += [f"echo {MARK}\\n", c]
    g = gdb_batch(steps, sample(program))
    no_traceback(g.stdout + g.stderr)
    parts = tool_text(g.stdout).split(MARK + "\n")[1:]
    assert len(parts) == len(commands), g.stdout + g.stderr
    return parts, out.read_text()


def search(pattern, text, flags=0):
    m = re.search(pattern, text, flags)
    assert m is not None, text
    return m


def value(text):
    return int(search(r"= (0x[0-9a-f]+|\d+)", text).group(1), 0)


def mappings(text):
    rows = []
    for line in text.splitlines():
        # gdb 12+ has a Perms column; gdb 10 does not
        m = re.match(r"\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+(?:\s+([r-][w-][x-][ps]))?\s*(.*)$",
                     line)
        if m:
            rows.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3) or "", m.group(4).strip()))
    return rows


def containing(rows, address):
    (row,) = [r for r in rows if r[0] <= address < r[1]]
    return row


def fits(text):
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_where_against_gdb(tmp_path):
    cmds = ["p/x (unsigned long)&main_arena", "p/x (unsigned long)&main_arena.bins[4]",
            "heap where &main_arena.bins[4] --json", "info symbol &main_arena.bins[4]",
            "heap where &main_arena.bins[4]",
            "thread 2", "p/x (unsigned long)&tcache->entries[3]", "heap where &tcache->entries[3] --json",
            "p/x (unsigned long)&tcache->counts[3]", "heap where &tcache->counts[3] --json",
            "p/x (unsigned long)tcache", "heap where &tcache->entries[3]",
            "p/x $sp", "heap where $sp + 8 --json", "heap where $sp + 8",
            "p/x (unsigned long)thread_arena",
            "p/x (unsigned long)&((heap_info *)((unsigned long)thread_arena & ~0x3ffffff))->mprotect_size",
            "heap where &((heap_info *)((unsigned long)thread_arena & ~0x3ffffff))->mprotect_size --json",
            "heap where &turn --json", "info symbol &turn",
            "info proc mappings", "heap where 16 --json"]
    out, printed = session(cmds, tmp_path)
    o = dict(zip(cmds, out))
    main_arena = value(o[cmds[0]])
    bins4 = value(o[cmds[1]])
    w = json_doc(o["heap where &main_arena.bins[4] --json"])
    assert set(w) == {"address", "kind", "chunk", "offset", "arena", "thread", "field", "symbol", "mapping"}
    sym = search(r"^(\S+) \+ (\d+) in section", o["info symbol &main_arena.bins[4]"])
    assert w == {"address": bins4, "kind": "arena", "chunk": None, "offset": bins4 - main_arena, "arena": main_arena,
                 "thread": None, "field": "bins[4]", "symbol": f"{sym.group(1)}+{sym.group(2)}",
                 "mapping": w["mapping"]}
    maps = mappings(o["info proc mappings"])
    assert w["mapping"] == containing(maps, bins4)[3]
    # bins[4] is bin 3's fd (bin_at(m, i) = &bins[(i - 1) * 2] - offsetof(fd)): small bin 3
    text = o["heap where &main_arena.bins[4]"]
    fits(text)
    assert text.splitlines()[:2] == [f"{bins4:#x} is main_arena.bins[4]", "  meaning   small[3]'s header: its fd "
                                                                         "(first chunk)"]

    if not o["p/x (unsigned long)tcache"].strip():
        return  # this gdb reads no TLS variable (gdb 10 finds no libthread_db for this glibc)
    tcache = value(o["p/x (unsigned long)tcache"])
    for field in ("entries[3]", "counts[3]"):
        address = value(o[f"p/x (unsigned long)&tcache->{field}"])
        t = json_doc(o[f"heap where &tcache->{field} --json"])
        assert (t["address"], t["kind"], t["thread"], t["field"], t["chunk"], t["offset"]) == (
            address, "tcache", 2, field, tcache - 16, address - tcache)
    fits(o["heap where &tcache->entries[3]"])
    assert f"{value(o['p/x (unsigned long)&tcache->entries[3]']):#x} is ((tcache_perthread_struct *) {tcache:#x})" \
           "->entries[3]" in o["heap where &tcache->entries[3]"]

    sp = value(o["p/x $sp"])
    s = json_doc(o["heap where $sp + 8 --json"])
    assert (s["address"], s["kind"], s["thread"], s["offset"], s["mapping"]) == (
        sp + 8, "stack", 2, 8, containing(maps, sp)[3])
    fits(o["heap where $sp + 8"])

    arena = value(o["p/x (unsigned long)thread_arena"])
    mprotect = value(o[cmds[16]])
    h = json_doc(o[cmds[17]])
    assert (h["address"], h["kind"], h["field"], h["arena"], h["offset"]) == (
        mprotect, "heap_info", "mprotect_size", arena, mprotect & (HEAP_MAX_SIZE - 1))

    g = json_doc(o["heap where &turn --json"])
    assert g["kind"] == "symbol" and g["symbol"] == o["info symbol &turn"].split(" in section")[0] == "turn"
    assert g["mapping"] == containing(maps, g["address"])[3]  # .bss: the anonymous mapping after the program
    assert json_doc(o["heap where 16 --json"]) == {"address": 16, "kind": "nothing", "chunk": None, "offset": None,
                                                   "arena": None, "thread": None, "field": None, "symbol": None,
                                                   "mapping": None}


def test_where_a_printed_pointer_and_a_mapping(tmp_path):
    out, printed = session(["info proc mappings"], tmp_path)
    maps = mappings(out[0])
    vvar = next(r for r in maps if r[3] == "[vvar]")
    ptr = int(search(r"^@ ptr t1_1 (0x[0-9a-f]+) ", printed, re.M).group(1), 16)
    # the chunk's arena: heap_info.ar_ptr, the first word of its heap (HEAP_MAX_SIZE-aligned)
    cmds = [f"heap where {ptr + 5} --json", f"heap where {ptr + 5}", "thread 2",
            f"p/x *(unsigned long *){ptr & ~(HEAP_MAX_SIZE - 1):#x}",
            f"heap where {vvar[0] + 8} --json", f"info symbol {vvar[0] + 8}"]
    out, _ = session(cmds, tmp_path)
    o = dict(zip(cmds, out))
    c = json_doc(o[cmds[0]])
    assert (c["kind"], c["chunk"], c["offset"], c["arena"], c["thread"]) == (
        "chunk", ptr - 16, 21, value(o[cmds[3]]), None)
    fits(o[cmds[1]])
    assert o[cmds[1]].splitlines()[1] == f"  offset    +0x15 from the chunk, +0x5 from the user pointer {ptr:#x}"
    assert "No symbol matches" in o[cmds[5]]
    m = json_doc(o[cmds[4]])
    assert (m["kind"], m["offset"], m["mapping"], m["symbol"]) == ("mapping", 8, "[vvar]", None)


def test_layout_against_the_mappings(tmp_path):
    cmds = ["heap layout", "info proc mappings", "info threads"] + [
        c for n in (1, 2, 3, 4) for c in (f"thread {n}", "p/x $sp", "p/x (unsigned long)thread_arena")]
    out, _ = session(cmds, tmp_path)
    layout, maps = out[0], mappings(out[1])
    fits(layout)
    lines = layout.splitlines()
    rows = [line for line in lines if not line.startswith(" ")]
    # every mapping gdb lists, in its order, with its protection
    assert [tuple(int(x, 16) for x in r.split()[0].split("-")) for r in rows] == [(m[0], m[1]) for m in maps]
    if all(m[2] for m in maps):
        assert [r.split()[3] for r in rows] == [m[2] for m in maps]
    # each thread's $sp, under the mapping holding it; each thread arena's heap: writable up to
    # heap_info + mprotect_size (gdb's `info proc mappings`: an rw-p mapping), reserved to HEAP_MAX_SIZE
    for n in (1, 2, 3, 4):
        i = cmds.index(f"thread {n}")
        sp = value(out[i + 1])
        under = containing(maps, sp)
        block = layout.split(f"{under[0]:#x}-{under[1]:#x}")[1].split("\n0x")[0]
        assert f"  {sp:#x} thread {n}'s stack pointer" in block
        if n == 1 or not out[i + 2].strip():  # gdb 10 reads no TLS variable with this glibc
            continue
        arena = value(out[i + 2])
        info = arena & ~(HEAP_MAX_SIZE - 1)
        writable = containing(maps, info)
        assert writable[0] == info and writable[2] in ("rw-p", "")
        reserved = containing(maps, writable[1])
        assert reserved[2] in ("---p", "") and reserved[1] == info + HEAP_MAX_SIZE
        assert f"  {writable[1]:#x}-{reserved[1]:#x}   reserved, not writable (HEAP_MAX_SIZE)" in lines
        assert any(line.startswith(f"  {info:#x}-") and f"heap of arena {arena:#x}" in line for line in lines)
