"""Pointers named where a problem or a line shows them: heap check's messages, heap chunks'
free chunks.

Truth from outside gdb_heap: the addresses corrupt.c prints, gdb's `info symbol` and `p $sp`,
`p &main_arena.bins[N]` (bin_at(i) is &bins[2(i-1)] less two words), gdb's `x/2gx`."""

import re

import pytest

from tests.gdbrun import CONFIG, gdb_batch, json_doc, no_traceback, sample, tool_text

MARK = "==named=="
HEX = re.compile(r"0x[0-9a-f]+")


def at_checkpoint(program, args, commands):
    """Each command's output at the program's first checkpoint; the program's printed addresses."""
    cmds = ["break checkpoint", f"run {args}"]
    for c in commands:
        cmds += [f"echo {MARK}\\n", c]
    r = gdb_batch(cmds, sample(program))
    no_traceback(r.stdout + r.stderr)
    printed = dict(re.findall(r"^@ addr (\S+) (0x[0-9a-f]+)$", r.stdout, re.M))
    parts = [tool_text(p) for p in r.stdout.split(MARK + "\n")[1:]]
    assert len(parts) == len(commands), r.stdout[-3000:] + r.stderr[-3000:]
    return parts, {k: int(v, 16) for k, v in printed.items()}


def symbol_name(info):
    """gdb's `info symbol` answer as name+offset."""
    m = re.match(r"^(\S+)(?: \+ (\d+))? in section", info.strip())
    assert m, info
    return m.group(1) + (f"+{m.group(2)}" if m.group(2) else "")


def problems(text):
    return [p["message"] for p in json_doc(text)["problems"]]


def test_a_forged_link_to_a_global_is_named_by_its_symbol():
    if not CONFIG.symbols and CONFIG.static:
        pytest.skip("a stripped static program has no symbol for the fake chunk")
    out, printed = at_checkpoint("corrupt", "uaf_tcache", ["heap check --json"])
    fake = printed["fake"]  # the link's target (on i386 8 bytes into the array `fake`)
    symbol, _ = at_checkpoint("corrupt", "uaf_tcache", [f"info symbol {fake:#x}"])
    want = f"links to {fake:#x} (<{symbol_name(symbol[0])}>), outside any heap"
    assert any(want in m for m in problems(out[0])), (want, problems(out[0]))


def test_a_forged_link_to_the_stack_is_named_by_its_thread_and_sp():
    out, printed = at_checkpoint("corrupt", "uaf_tcache_stack", ["heap check --json", "p/x (long) $sp", "heap check"])
    fake, sp = printed["stackfake"], int(HEX.findall(out[1])[-1], 16)
    assert fake >= sp  # main's frame is above checkpoint's
    want = f"links to {fake:#x} (thread 1's stack ($sp+{fake - sp:#x})), outside any heap"
    assert any(want in m for m in problems(out[0])), (want, problems(out[0]))
    assert "thread 1's stack" in out[2]  # the text says it too


def test_a_forged_bk_and_the_bin_header_it_should_be():
    if not CONFIG.symbols:
        pytest.skip("main_arena's symbol names the bin header")
    out, printed = at_checkpoint("corrupt", "smallbin_bk", ["heap check --json"])
    message = next(m for m in problems(out[0]) if "has bk" in m)
    label = re.match(r"small\[(\d+)\]", message)
    assert label, message
    index = int(label.group(1))
    # main_arena+N from its debug info (i386 libcs give `info symbol` no minimal symbol for it)
    truth, _ = at_checkpoint("corrupt", "smallbin_bk", [
        f"p/x (long) &main_arena.bins[{2 * (index - 1)}] - 2 * sizeof(size_t)", "p/x (long) &main_arena",
        f"info symbol {printed['fake']:#x}"])
    header, base = (int(HEX.findall(t)[-1], 16) for t in truth[:2])
    assert f"bk {printed['fake']:#x} (<{symbol_name(truth[2])}>)" in message, message
    assert (f"expected {header:#x} (<main_arena+{header - base}> small[{index}] (bin_at({index})))"
            in message), message


def test_heap_chunks_names_a_free_chunks_links_when_the_width_allows():
    if not CONFIG.symbols:
        pytest.skip("main_arena's symbol names the bin header")
    out, _ = at_checkpoint("all_bins", "> /dev/null", ["heap chunks", "set width 80", "heap chunks"])
    wide, narrow = out[0], out[2]
    line = next(x for x in wide.splitlines() if " free unsorted " in x)
    chunk = int(line.split()[0], 16)
    word = "g" if CONFIG.arch == "amd64" else "w"
    truth, _ = at_checkpoint("all_bins", "> /dev/null", [
        f"x/2{word}x {chunk + 2 * (8 if word == 'g' else 4):#x}",
        "p/x (long) &main_arena.bins[0] - 2 * sizeof(size_t)", "p/x (long) &main_arena"])
    fd, bk = (int(w, 16) for w in HEX.findall(truth[0].split(":", 1)[1]))
    header, base = (int(HEX.findall(t)[-1], 16) for t in truth[1:3])
    named = {header: f"<main_arena+{header - base}>"}
    assert f"fd {named.get(fd, f'chunk {fd:#x}')} bk {named.get(bk, f'chunk {bk:#x}')}" in line, line
    assert all(len(x) <= 80 for x in narrow.splitlines())
