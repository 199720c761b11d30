"""The $heap_* convenience functions against glibc itself: malloc_usable_size() as the sample
prints it, the pointers it prints, gdb's reading of the chunk headers through glibc's debug
info (struct malloc_chunk, main_arena), and glibc's abort on the double free they catch."""

import os
import re
import tempfile

import pytest

from tests.gdbrun import CONFIG, EMPTY_DEBUG_DIR, gdb_batch, no_traceback, sample

NAMES = ("tiny", "small", "big", "guard", "mapped")
S = 4 if CONFIG.arch == "i386" else 8


def program_facts(path):
    with open(path) as f:
        return [line.split() for line in f if line.startswith("@ ")]


def session(commands):
    with tempfile.TemporaryDirectory(prefix="gdb_heap_test.") as tmp:
        out = os.path.join(tmp, "program.out")
        g = gdb_batch(["break checkpoint", f"run > {out}", "up"] + commands, sample("double_free"))
        return g, program_facts(out)


@pytest.fixture(scope="module")
def at_checkpoint():
    commands = []
    for name in NAMES:
        for fn in ("chunk", "size", "usable", "is_free", "arena"):
            commands.append(f'printf "@@ {fn} {name} %lu\\n", $heap_{fn}({name})')
        commands.append(f'printf "@@ size_field {name} %lu\\n", ((struct malloc_chunk *)((char *){name} - {2 * S}))'
                        '->mchunk_size')
        commands.append(f'printf "@@ chunk_arg {name} %lu\\n", $heap_size($heap_chunk({name}), "chunk")')
    commands.append('printf "@@ main_arena x %lu\\n", &main_arena')
    commands.append('printf "@@ usable null %lu\\n", $heap_usable(0)')
    commands.append('printf "@@ is_free null %lu\\n", $heap_is_free(0)')
    commands.append('printf "@@ is_free not_a_chunk %lu\\n", $heap_is_free(&mi_buf)')
    commands += ["p $heap_size(tiny + 8)", 'p $heap_size(tiny, "chunk")', "p $heap_size(&mi_buf)",
                 'p $heap_size(tiny, "bogus")']
    g, program = session(commands)
    got = {}
    for line in g.stdout.splitlines():
        if line.startswith("@@ "):
            _, what, name, value = line.split()
            got[what, name] = int(value)
    return g, program, got


def test_against_glibc_and_debug_info(at_checkpoint):
    if not CONFIG.symbols or CONFIG.static:
        pytest.skip("the truth here is read through libc's debug info (struct malloc_chunk, main_arena)")
    g, program, got = at_checkpoint
    no_traceback(g.stdout + g.stderr)
    pointers = {f[2]: int(f[3], 16) for f in program if f[1] == "ptr"}
    usable = {f[2]: int(f[3]) for f in program if f[1] == "usable"}
    assert set(usable) == set(NAMES)
    for name in NAMES:
        p = pointers[name]
        assert got["chunk", name] == p - 2 * S, name  # mem2chunk by hand
        assert got["size", name] == got["size_field", name] & ~7, name
        assert got["chunk_arg", name] == got["size", name], name
        assert got["usable", name] == usable[name], name  # malloc_usable_size, as glibc said it
    # small went to tcache, big to the unsorted bin: freed; the others are in use.
    assert {n for n in NAMES if got["is_free", n]} == {"small", "big"}
    assert got["arena", "mapped"] == 0  # an mmapped chunk has no arena
    assert all(got["arena", n] == got["main_arena", "x"] for n in NAMES if n != "mapped")
    assert got["size_field", "mapped"] & 2  # IS_MMAPPED, as glibc wrote it
    assert usable["big"] == 0 and usable["small"] > 0  # the sample did exercise both musable() cases
    assert got["usable", "null"] == 0 and got["is_free", "null"] == 0 and got["is_free", "not_a_chunk"] == 0


def test_errors_are_one_line(at_checkpoint):
    g, _, _ = at_checkpoint
    errors = [line for line in g.stderr.splitlines() if line.startswith("heap: $heap_size")]
    assert len(errors) == 4, g.stderr
    assert "not at" not in errors[0] and 'add "chunk"' in errors[0]  # inside a chunk: not a user pointer
    assert 'drop "chunk"' in errors[1]  # a user pointer given as a chunk address
    assert "in no heap" in errors[2]
    assert 'second argument is "chunk"' in errors[3]
    no_traceback(g.stderr)


@pytest.mark.parametrize("hide_libc_symbols", [False, True])
def test_break_on_double_free_before_glibc_aborts(hide_libc_symbols):
    """Also without libc's debug symbols: the tool then asks gdb about names it may not know,
    and a failing gdb.execute inside a condition used to leave gdb 10-13 thinking the thread ran."""
    if CONFIG.static and not CONFIG.symbols:
        pytest.skip("a static program stripped of libc's symbols has no function named free to break on")
    pre = [f"set debug-file-directory {EMPTY_DEBUG_DIR}"] if hide_libc_symbols and not CONFIG.static else []
    with tempfile.TemporaryDirectory(prefix="gdb_heap_test.") as tmp:
        out = os.path.join(tmp, "program.out")
        g = gdb_batch(pre=pre, commands=["break free if $heap_is_free($rdi)" if S == 8 else
                       "break free if $heap_is_free(*(void **)($esp + 4))",
                       f"run twice > {out}", "info breakpoints", "up", 'printf "@@ freeing %lu\\n", small_again',
                       "continue"], program=sample("double_free"))
        program = program_facts(out)
    no_traceback(g.stdout + g.stderr)
    stops = re.findall(r"^Breakpoint 1(?:\.\d+)?, ", g.stdout, re.M)
    assert len(stops) == 1, g.stdout  # the first free of small and big did not stop
    assert "breakpoint already hit 1 time" in g.stdout
    small = next(int(f[3], 16) for f in program if f[1:3] == ["ptr", "small"])
    assert f"@@ freeing {small}" in g.stdout
    assert ["@", "double_free", "small"] in program and ["@", "survived"] not in program
    # Continued, glibc sees the double free itself: the breakpoint was right.
    assert "double free detected" in g.stderr and "SIGABRT" in g.stdout
