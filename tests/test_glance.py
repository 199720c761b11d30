"""Reading the heap at a glance: pointers shown as stored and named, heap chunk --dump and
--json, heap map, heap chunks' filters and user column, every view within 80 columns.

Truth from outside gdb_heap: gdb's own `x/2gx` and `info symbol`, `p &main_arena.bins[N]`,
safe-linking's REVEAL_PTR computed here by hand from the word `x/gx` reads, and the
unfiltered JSON filtered here by hand."""

import re

import pytest

from tests.gdbrun import (ANSI, CONFIG, gdb_batch, host_glibc, json_doc, libc_types_commands, no_traceback, sample,
                          tool_text, version_tuple)

MARK = "==h13=="
SAFE_LINKING = version_tuple(host_glibc()) >= (2, 32)
FASTBINS = version_tuple(host_glibc()) < (2, 43)  # 2.43 removed the fastbins
NO_FASTBINS = "glibc 2.43+ has no fastbins: all_bins' fast sizes go to tcache and the small bins"
HEX = re.compile(r"0x[0-9a-f]+")
ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def session(commands, pre=("set width 80",)):
    """Run the commands at all_bins' checkpoint; each one's output, in order."""
    cmds = ["break checkpoint", "run > /dev/null"] + list(pre)
    for c in commands:
        cmds += [f"echo {MARK}\\n", c]
    r = gdb_batch(cmds, sample("all_bins"))
    no_traceback(r.stdout + r.stderr)
    parts = r.stdout.split(MARK + "\n")[1:]
    assert len(parts) == len(commands), r.stdout[-3000:] + r.stderr[-3000:]
    return [tool_text(p) for p in parts]


def x_words(text):
    """The words of gdb's `x/Ngx` output."""
    return [int(w, 16) for line in text.splitlines() for w in HEX.findall(line.split(":", 1)[1])]


@pytest.fixture(scope="module")
def first():
    if CONFIG.get("ARCH") != "amd64" or not CONFIG.symbols:
        pytest.skip("these compare with x/2gx and main_arena's symbols: x86-64 with libc's symbols")
    chunks_doc, bins_doc, arena = session(["heap chunks --json", "heap bins --json", "p/x (long) &main_arena"])
    return json_doc(chunks_doc), json_doc(bins_doc), value(arena)


def value(text):
    """The number gdb's `p/x` printed."""
    return int(HEX.findall(text)[0], 16)


def chain(bins, kind, index=None):
    return next(b["chunks"] for b in bins["bins"] if b["kind"] == kind and (index is None or b["index"] == index))


def test_links_stored_revealed_and_named(first):
    chunks, bins, arena = first
    tcache = chain(bins, "tcache", 0)[0]  # its next is the second of the chain
    # without fastbins another tcache chunk stands in, so the other chunks keep their places
    fast = chain(bins, "fast", 0)[0] if FASTBINS else chain(bins, "tcache", 0)[1]
    unsorted = chain(bins, "unsorted")[0]
    large = next(b for b in bins["bins"] if b["kind"] == "large")
    cmds = []
    for c in (tcache, fast, unsorted, large["chunks"][0]):
        cmds += [f"heap chunk {c:#x} --json", f"x/6gx {c:#x}", f"heap chunk {c:#x}"]
    out = session(cmds)
    # gdb's reading of the bins' addresses, in a session of its own: a static program's gets libc's types
    arena_type = f"((struct malloc_state *) {arena:#x})"
    large_bin = 2 * (large["index"] - 1)
    truth = session([f"p/x (long) &{arena_type}->bins[0]", f"p/x (long) &{arena_type}->bins[{large_bin}]"],
                    pre=["set width 80"] + libc_types_commands())
    bins0 = value(truth[0])
    large_bins = value(truth[1])
    docs = {}
    for i, c in enumerate((tcache, fast, unsorted, large["chunks"][0])):
        doc, words, text = json_doc(out[3 * i]), x_words(out[3 * i + 1]), out[3 * i + 2]
        docs[c] = doc
        assert doc["prev_size"] == words[0] and doc["size"] == words[1] & ~7
        assert doc["first_words"] == words[2:4]
        assert all(len(line) <= 80 for line in text.splitlines()), text
        for w in words[2:4]:  # the preview shows the words as gdb does, 0x and 16 digits
            assert f"{w:#018x}" in text
    # tcache next: the stored word and REVEAL_PTR by hand; it names the next chunk of the chain
    t = docs[tcache]
    stored = x_words(out[1])[2]
    revealed = ((tcache + 16) >> 12) ^ stored if SAFE_LINKING else stored
    second = chain(bins, "tcache", 0)[1]
    assert t["tcache_next"] == {"stored": stored, "revealed": revealed}
    assert revealed == second + 16
    assert t["tcache_key"] == x_words(out[1])[3]
    assert f"chunk {second:#x}+0x10" in t["pointers"]["next"]
    assert f"{stored:#x} stored, {revealed:#x} revealed" in out[2] or not SAFE_LINKING
    # fastbin fd: likewise, and it points at the chunk itself
    f = docs[fast] if FASTBINS else None
    stored = x_words(out[4])[2]
    revealed = ((fast + 16) >> 12) ^ stored if SAFE_LINKING else stored
    if f is not None:
        assert (f["fd_stored"], f["fd"]) == (stored, revealed) and revealed == chain(bins, "fast", 0)[1]
        assert f["pointers"]["fd"].startswith(f"chunk {revealed:#x} (free fast[0])")
    # the unsorted chunk's bk is bin_at(1) = &bins[0] - 2 * SIZE_SZ, named as gdb names it
    u = docs[unsorted]
    assert u["bk"] == bins0 - 16 == x_words(out[7])[3]
    sym = session([f"info symbol {bins0 - 16:#x}"])[0]
    assert sym.startswith(f"main_arena + {bins0 - 16 - arena} ")
    assert u["pointers"]["bk"].startswith(f"<main_arena+{bins0 - 16 - arena}> unsorted")
    assert f"<main_arena+{bins0 - 16 - arena}>" in out[8]
    # a large chunk: its bk is its bin's header, fd_nextsize/bk_nextsize as gdb reads them
    g = docs[large["chunks"][0]]
    words = x_words(out[10])
    assert (g["fd"], g["bk"], g["fd_nextsize"], g["bk_nextsize"]) == tuple(words[2:6])
    assert g["bk"] == large_bins - 16
    assert g["pointers"]["bk"].startswith(f"<main_arena+{large_bins - 16 - arena}> large[{large['index']}]")
    # neighbours: the next chunk's address is chunk + size
    assert g["next_chunk"]["address"] == large["chunks"][0] + g["size"]


def test_dump_is_what_x_shows(first):
    chunks, bins, _ = first
    large = next(b for b in bins["bins"] if b["kind"] == "large")["chunks"][0]
    inuse = next(c for c in chunks["chunks"] if c["state"] == "in_use" and c["size"] == 0x20)["address"]
    out = session([f"heap chunk {large:#x} --dump 96", f"x/12gx {large:#x}", f"heap chunk {inuse:#x} --dump",
                   f"x/4gx {inuse:#x}"])
    lines = out[0].splitlines()[1:]
    assert len(lines) == 6
    got = [int(w, 16) for line in lines for w in HEX.findall(line)[1:3]]
    assert got == x_words(out[1])
    assert "prev_size size" in lines[0] and "fd bk" in lines[1] and "fd_nextsize bk_nextsize" in lines[2]
    lines = out[2].splitlines()[1:]
    assert [int(w, 16) for line in lines for w in HEX.findall(line)[1:3]] == x_words(out[3])
    assert all(len(line) <= 80 for line in out[0].splitlines() + out[2].splitlines())


def test_map_words_and_links(first):
    if not FASTBINS:
        pytest.skip(NO_FASTBINS)
    chunks, bins, _ = first
    fast = chain(bins, "fast", 0)[0]
    out = session([f"heap map {fast + 16:#x} --count 3", f"x/6gx {fast:#x}", "heap map --count 40",
                   "set height 24", "set style enabled on", "heap map --count 3"])  # height: a terminal
    lines = out[0].splitlines()
    assert lines[0].startswith(f"+ {fast:#x} ")  # starts at the chunk holding the address
    rows = [line for line in lines if re.match(r"^[+|] 0x", line)]
    got = [(int(HEX.findall(r)[0], 16), [int(w, 16) for w in HEX.findall(r)[1:3]]) for r in rows]
    want = x_words(out[1])
    assert got[0] == (fast, want[0:2]) and got[1] == (fast + 16, want[2:4]) and got[2] == (fast + 32, want[4:6])
    nxt = chain(bins, "fast", 0)[1]
    assert any(f"fd reveals {nxt:#x}: chunk {nxt:#x} (free fast[0])" in line for line in lines) or not SAFE_LINKING
    # one chunk per "+", in address order, as heap chunks --json lists them
    starts = [int(HEX.findall(line)[0], 16) for line in out[2].splitlines() if line.startswith("+ ")]
    assert starts == [c["address"] for c in chunks["chunks"][:40]]
    assert all(len(line) <= 80 for line in out[0].splitlines() + out[2].splitlines())
    coloured = out[-1]
    assert ANSI.search(coloured) and all(len(ESCAPES.sub("", line)) <= 80 for line in coloured.splitlines())
    assert not ANSI.search(out[2])


def test_filters_are_the_json_filtered_by_hand(first):
    chunks, _, _ = first
    every = chunks["chunks"]
    lo, hi = every[10]["address"], every[60]["address"]
    filters = {
        "--state free": lambda c: c["state"] == "free",
        "--state in_use": lambda c: c["state"] == "in_use",
        "--state top": lambda c: c["state"] == "top",
        "--bin small": lambda c: c["bin"] == "small",
        "--bin tcache --min-size 0x40": lambda c: c["bin"] == "tcache" and c["size"] >= 0x40,
        "--min-size 0x100 --max-size 0x200": lambda c: 0x100 <= c["size"] <= 0x200,
        f"--from {lo:#x} --to {hi:#x}": lambda c: lo <= c["address"] < hi,
        f"--state free --from {lo:#x} --limit 5": lambda c: c["state"] == "free" and c["address"] >= lo,
    }
    cmds = [f"heap chunks {f} --json" for f in filters] + ["heap chunks --bin small --summary --json",
                                                          "heap chunks --state free --limit 3"]
    out = session(cmds)
    for (f, keep), text in zip(filters.items(), out):
        got = json_doc(text)
        want = [c for c in every if keep(c)]
        if "--limit 5" in f:
            want = want[:5]
        assert got["chunks"] == want, f
        assert set(got) == set(chunks)  # the same document, fewer chunks
    summary = json_doc(out[len(filters)])["summary"]
    small = [c for c in every if c["bin"] == "small"]
    assert sum(r["count"] for r in summary) == len(small) and {r["bin"] for r in summary} == {"small"}
    text = out[len(filters) + 1].splitlines()
    free = [c for c in every if c["state"] == "free"][:3]
    for line, c in zip(text[1:4], free):  # chunk, then the user pointer malloc returned
        assert line.split()[:2] == [f"{c['address']:#x}", f"{c['user_address']:#x}"]
    assert "stopped after 3 chunks" in text[4]
    bad = gdb_batch(["break checkpoint", "run > /dev/null", "heap chunks --state bogus"], sample("all_bins"))
    assert "heap: --state wants one of in_use, free, top, not 'bogus'" in bad.stderr


def test_every_view_fits_80_columns(first):
    chunks, _, _ = first
    p = chunks["chunks"][5]["address"]
    views = ["heap", "heap chunks", "heap bins", "heap top", "heap arenas", "heap check", "heap mmapped",
             "heap chunks --summary", f"heap chunk {p:#x}", f"heap map {p:#x}", "help heap", "help heap chunks",
             "help heap chunk", "help heap map", "help heap bins", "help heap check", "help heap mmapped",
             "help heap arenas", "help heap top"]
    for view, text in zip(views, session(views)):
        long = [line for line in text.splitlines() if len(line) > 80 and not line.startswith("warning")]
        assert not long, (view, long)
    # unlimited width (batch mode's default): heap chunks shows both words and the ASCII
    wide = session(["heap chunks --limit 3"], pre=())[0].splitlines()
    assert any(len(re.findall(r"0x[0-9a-f]{16}\b", line)) == 2 and len(line) > 80 for line in wide), wide
