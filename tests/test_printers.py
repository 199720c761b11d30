"""The pretty-printers of glibc's malloc structs against gdb's raw print of the same struct
(`print/r`, which bypasses every pretty-printer), at all_bins.c's checkpoint."""

import re

import pytest

from tests.gdbrun import CONFIG, gdb_batch, host_glibc, no_traceback, sample, version_tuple

S = 4 if CONFIG.arch == "i386" else 8
# all_bins' 24-byte requests fill the tcache bin of 0x20-byte chunks: tcache[0] on x86-64, tcache[1]
# on i386 (MINSIZE 16 there)
ENTRY = f"tcache->entries[{0 if S == 8 else 1}]"
PRINTS = {
    "arena": "main_arena", "tcache": "*tcache", "entry": f"*{ENTRY}", "par": "mp_",
    "chunk": "*main_arena.bins[0]",  # the unsorted bin's first chunk
}


@pytest.fixture(scope="module")
def printed():
    if not CONFIG.symbols or CONFIG.static:
        pytest.skip("the structs' types come from libc's debug info")
    commands = ["set print elements unlimited", "set print repeats unlimited", "break checkpoint",
                "run > /dev/null", "info pretty-printer"]
    for key, expr in PRINTS.items():
        commands += [f'echo @@ {key} pretty\\n', f"p/x {expr}", f'echo @@ {key} raw\\n', f"p/rx {expr}"]
    commands += ['echo @@ bins_address raw\\n', "p/x &main_arena.bins[0]",
                 'echo @@ entry_address raw\\n', f"p/x {ENTRY}",
                 "disable pretty-printer global gdb_heap", 'echo @@ disabled pretty\\n', "p/x mp_"]
    g = gdb_batch(commands, sample("all_bins"))
    no_traceback(g.stdout + g.stderr)
    out = {}
    for m in re.finditer(r"^@@ (\w+) (\w+)\n\$\d+ = (.*)$", g.stdout, re.M):
        out[m.group(1), m.group(2)] = m.group(3)
    return g.stdout, out


def fields(text):
    """name = value pairs of a one-level struct print ({...} values kept whole)."""
    return dict(re.findall(r"(?:^|, |\{)([\w\[\]. ()]+?) = (\{[^}]*\}|[^,{}]+)", text))


def test_listed_and_disabled(printed):
    stdout, out = printed
    listing = stdout[stdout.index("global pretty-printers:"):]
    for name in ("gdb_heap", "malloc_chunk", "malloc_state", "tcache_perthread_struct", "tcache_entry",
                 "heap_info", "malloc_par"):
        assert re.search(rf"^\s+{name}$", listing, re.M), name
    assert "6 printers disabled" in stdout
    assert out["disabled", "pretty"] == out["par", "raw"]  # disabled: gdb's own print again


def test_malloc_state_shows_the_non_empty_bins(printed):
    _, out = printed
    pretty, raw = fields(out["arena", "pretty"]), fields(out["arena", "raw"])
    for name in ("top", "last_remainder", "system_mem", "next", "attached_threads"):
        assert pretty[name].split()[0] == raw[name].split()[0], name
    bins = [int(x, 16) for x in raw["bins"].strip("{}").split(", ")]
    assert "repeats" not in raw["bins"]  # each word printed (no run of equal words folded)
    base = int(out["bins_address", "raw"].split()[-1], 16)
    # bin_at(i) by hand: the fake chunk whose fd is bins[2(i-1)], i.e. 2 words before it.
    want = {i: (bins[2 * (i - 1)], bins[2 * i - 1]) for i in range(1, 127)
            if bins[2 * (i - 1)] != base + S * 2 * (i - 1) - 2 * S}
    got = {int(k[5:-4]): (int(pretty[k].split()[0], 16), int(pretty[f"bins[{k[5:-4]}].bk"].split()[0], 16))
           for k in pretty if k.startswith("bins[") and k.endswith(".fd")}
    assert got == want and len(want) >= 3  # all_bins leaves unsorted, small and large bins in use
    if "fastbinsY" not in raw:  # glibc 2.43 removed the fast bins
        assert not any(k.startswith("fastbinsY") for k in pretty)
        return
    fast = [int(x, 16) for x in raw["fastbinsY"].strip("{}").split(", ")]
    assert {k: int(v.split()[0], 16) for k, v in pretty.items() if k.startswith("fastbinsY[")} == {
        f"fastbinsY[{i}]": f for i, f in enumerate(fast) if f}


def test_tcache_and_entry(printed):
    _, out = printed
    if ("tcache", "raw") not in out:
        pytest.skip("gdb cannot read the TLS variable tcache here (its libthread_db does not match this glibc)")
    pretty, raw = fields(out["tcache", "pretty"]), fields(out["tcache", "raw"])
    counts_name = "counts" if "counts" in raw else "num_slots"
    entries = [int(x, 16) for x in raw["entries"].strip("{}").split(", ")]
    assert {k for k in pretty if k.startswith("entries[")} == {f"entries[{i}]" for i, e in enumerate(entries) if e}
    assert all(pretty[f"{counts_name}[{k[8:-1]}]"] for k in pretty if k.startswith("entries["))
    entry, stored = fields(out["entry", "pretty"]), int(fields(out["entry", "raw"])["next"], 16)
    address = int(out["entry_address", "raw"].split()[-1], 16)
    if version_tuple(host_glibc()) < (2, 32):  # no safe-linking: next is what is stored
        assert int(entry["next"], 16) == stored and "next (stored)" not in entry
        return
    revealed = (address >> 12) ^ stored  # REVEAL_PTR by hand (2.32+); the entry's next is its first word
    assert int(entry["next"], 16) == revealed and int(entry["next (stored)"], 16) == stored


def test_chunk_and_par(printed):
    _, out = printed
    chunk, raw = fields(out["chunk", "pretty"]), fields(out["chunk", "raw"])
    size = int(raw["mchunk_size"], 16)
    assert chunk["mchunk_size"].startswith(f"{size:#x} ({size & ~7:#x} | PREV_INUSE")
    assert int(chunk["fd"], 16) and int(chunk["bk"], 16)  # a free chunk: its list links
    assert chunk["fd"] == raw["fd"] and chunk["bk"] == raw["bk"]
    par = fields(out["par", "raw"])
    assert out["par", "pretty"].startswith(f"{int(par['n_mmaps'], 16)} mmapped chunks ({par['mmapped_mem']} bytes), "
                                           f"mmap_threshold {par['mmap_threshold']}")
