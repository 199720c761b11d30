"""glibc's debug malloc preloaded (LD_PRELOAD=libc_malloc_debug.so.0, glibc 2.34+): the process has
two main_arena and mp_, libc's and the library's; the tool must take the one the process uses.

Truth: gdb's own reading of both libraries' main_arena and mp_ through their debug info
(gdb.lookup_static_symbols, printed in the same session), and the pointers the sample prints."""

import json
import os
import re
from typing import Any, Dict

import pytest

from tests.gdbrun import CONFIG, OTHER_GLIBC, gdb_batch, host_glibc, no_traceback, sample, version_tuple

# The debug library of the glibc under test: the host's, or the matrix folder's (2.34+).
DEBUG_MALLOC = os.path.join(CONFIG.get("LIBDIR") if OTHER_GLIBC else "/lib/x86_64-linux-gnu",
                            "libc_malloc_debug.so.0")
pytestmark = [
    pytest.mark.skipif(CONFIG.static, reason="LD_PRELOAD does not reach a static program"),
    pytest.mark.skipif(not os.path.exists(DEBUG_MALLOC), reason=f"{DEBUG_MALLOC} is missing (glibc before 2.34)"),
]

# gdb's reading, per library: its main_arena's address and top, whether top is still the initial
# top (bin 1), and mp_.sbrk_base.
TRUTH = ("python\nfor s in gdb.lookup_static_symbols('main_arena'):\n"
         "    o = s.symtab.objfile; a = s.value()\n"
         "    m = [x for x in gdb.lookup_static_symbols('mp_') if x.symtab.objfile == o][0].value()\n"
         "    print('@@', (o.owner or o).filename.split('/')[-1], int(a.address), int(a['top']),\n"
         "          int(a['top']) == int(a['bins'].address) - 2 * a['top'].type.sizeof, int(m['sbrk_base']))\n"
         "    f = a.type.fields()\n"
         "    fast = [int(a['fastbinsY'][i]) for i in range(10)] if 'fastbinsY' in [x.name for x in f] else []\n"
         "    print('@@bins', (o.owner or o).filename.split('/')[-1], *fast, '|',\n"
         "          *[int(a['bins'][2 * i]) for i in range(126)])\nend")


def preload(env):
    # Through env(1) under gdb's shell: the shell itself (the host's glibc) must not load another
    # glibc's debug library.
    return [f"set exec-wrapper env LD_PRELOAD={DEBUG_MALLOC}"] + [f"set environment {e}" for e in env]


def run(tmp_path, env, hidden=False):
    out_file = tmp_path / "program.out"
    pre = ["set debug-file-directory /nonexistent"] if hidden else []
    pre += preload(env)
    out = gdb_batch(["break checkpoint", f"run > {out_file}", "heap --json", "heap", "heap chunks --json",
                     "heap mmapped --json"], sample("debug_malloc"), pre=pre)
    no_traceback(out.stdout + out.stderr)
    docs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(docs) == 3, out.stdout + out.stderr
    printed = {f[2]: int(f[3], 16) for f in (line.split() for line in out_file.read_text().splitlines())
               if f[:2] == ["@", "ptr"]}
    return out, docs, printed


def truth(tmp_path, env):
    pre = preload(env)
    out = gdb_batch(["break checkpoint", f"run > {tmp_path / 'truth.out'}", TRUTH], sample("debug_malloc"), pre=pre)
    rows = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("@@ ")]
    found: Dict[str, Dict[str, Any]] = {
        name: {"arena": int(a), "top": int(t), "pristine": p == "True", "sbrk_base": int(b)}
        for name, a, t, p, b in rows}
    for line in out.stdout.splitlines():
        if line.startswith("@@bins "):
            name, *words = line.split()[1:]
            cut = words.index("|")
            found[name]["fastbins"] = [int(w) for w in words[:cut]]
            found[name]["bins"] = [int(w) for w in words[cut + 1:]]  # fd of bin 1 (unsorted), 2, ...
    return found


def bin_kind(arena, chunk):
    """Which kind of bin gdb's reading of the arena shows `chunk` heading: glibc's bin numbers
    (malloc.c): 1 unsorted, 2..63 small, 64..126 large."""
    if chunk in arena["fastbins"]:
        return "fast"
    number = arena["bins"].index(chunk) + 1
    return "unsorted" if number == 1 else "small" if number < 64 else "large"


def check_chunks(docs, printed, S=8):
    overview, chunks, mmapped = docs
    users = {c["user_address"]: c for c in chunks["chunks"]}
    for name in ("keep1", "keep2"):
        assert users[printed[name]]["state"] == "in_use"
    assert users[printed["gone"]]["state"] == "free"
    assert [c["user_address"] for c in mmapped["chunks"]] == [printed["big"]] and mmapped["glibc_count"] == 1


def test_preloaded_without_malloc_check_uses_libc(tmp_path):
    t = truth(tmp_path, [])
    assert set(t) == {"libc.so.6", "libc_malloc_debug.so.0"}
    assert not t["libc.so.6"]["pristine"] and t["libc_malloc_debug.so.0"]["sbrk_base"] == 0
    out, docs, printed = run(tmp_path, [])
    overview = docs[0]
    assert overview["arenas"][0]["address"] == t["libc.so.6"]["arena"]
    assert overview["arenas"][0]["top"] == t["libc.so.6"]["top"]
    assert "the main_arena of libc.so.6 (libc_malloc_debug.so.0 is preloaded" in overview["located_by"]
    assert "the one in libc_malloc_debug.so.0 is unused" in overview["located_by"]
    # libc's own tcache through its debug symbols: gdb's TLS support, or (a gdb without it for this
    # inferior: gdb 10 + glibc 2.36) the thread pointer plus the TLS offset those symbols give
    assert re.search(r"tcache found by (the thread pointer \+ libc's TLS offset \()?debug symbols", out.stdout)
    check_chunks(docs, printed)
    assert {c["bin"] for c in docs[1]["chunks"] if c["user_address"] == printed["gone"]} == {"tcache"}


@pytest.mark.parametrize("hidden", [False, True], ids=["symbols", "nosymbols"])
def test_malloc_check_uses_the_debug_librarys_own_arena(tmp_path, hidden):
    t = truth(tmp_path, ["MALLOC_CHECK_=3"])
    mine = t["libc_malloc_debug.so.0"]
    libc = t["libc.so.6"]
    assert not mine["pristine"] and mine["sbrk_base"]
    # libc's never serves a call: untouched (top 0), or set up by 2.44+'s early init but with no heap
    assert (libc["top"] == 0 or libc["pristine"]) and libc["sbrk_base"] == 0, t
    out, docs, printed = run(tmp_path, ["MALLOC_CHECK_=3"], hidden)
    overview = docs[0]
    assert overview["arenas"][0]["address"] == mine["arena"] and overview["arenas"][0]["top"] == mine["top"]
    assert overview["glibc"] == host_glibc()  # from libc's banner: the library has none
    text = out.stdout
    assert re.search(rf"main_arena {mine['arena']:#x}, mp_ 0x[0-9a-f]+\)", text)
    assert "libc_malloc_debug.so.0" in overview["located_by"] or "libc_malloc_debug.so.0's" in text
    assert "which serves malloc itself" in text and "MALLOC_CHECK_ on" in text
    assert "this malloc has no tcache" in text
    check_chunks(docs, printed)
    # Built with USE_TCACHE=0: the freed chunk heads a bin of the library's own arena (a fast bin
    # where 100 bytes is a fast size and fast bins exist; 2.43 removed them).
    size_sz = 4 if CONFIG.arch == "i386" else 8
    expected = bin_kind(mine, printed["gone"] - 2 * size_sz)
    assert expected == ("fast" if size_sz == 8 and version_tuple(host_glibc()) < (2, 43) else expected)
    assert {c["bin"] for c in docs[1]["chunks"] if c["user_address"] == printed["gone"]} == {expected}
