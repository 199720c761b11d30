"""A heap caught mid-update (c_samples/midfree.c): a worker thread stopped inside free(), right
after _int_free cleared the next chunk's PREV_INUSE and before it linked the chunk into the
unsorted bin.  gdb stops there by watching that size field (`watch -l *watch_here`), so no line
number of malloc.c is needed.  Truth: gdb's own `thread apply all bt` (which thread is in which
function), the LWP and pointers the sample prints, gdb's reading of the arena's mutex through
glibc's debug info, and the program itself: continued, it finishes the free and exits normally
(the heap was healthy); with its `damage` argument glibc aborts with the message heap check
predicts, and the thread aborting inside free is not an update in progress."""

import os
import re
import tempfile
from typing import Any, Dict, List, Tuple

import pytest

from gdb_heap import in_progress, registry, render
from gdb_heap.check import check_arena
from gdb_heap.in_progress import ThreadFrames
from gdb_heap.style import Style
from tests.gdbrun import CONFIG, gdb_batch, json_doc, no_traceback, sample, tool_text
from tests.synthetic import HeapBuilder

MARK = "@@gdb_heap_in_progress@@"
CAPTURE = """def capture(command):
    try:
        gdb.write(gdb.execute(command, to_string=True))
    except gdb.error as e:
        gdb.write("ERROR: " + str(e))
"""
POINTER = "(char *)watch_here + 2 * sizeof(size_t)"  # guard's user pointer
TEXT = [i for i in registry.every_invocation(POINTER) if not i.endswith("--json")] + ["heap check --strict"]
JSON = ["heap check --json", "heap check --all-arenas --json", "heap --json", "heap bins --json",
        "heap chunks --json"]
TRUTH = ["thread apply all bt", "info threads"]
WARNING = "heap: warning: "


def captured(script: List[str], commands: List[str], program: str) -> Tuple[List[Dict[str, str]], str]:
    """Runs `script` (gdb commands) then each command, captured apart: a "continue" starts a new
    stop.  Returns (each stop's outputs by command, gdb's whole stdout)."""
    lines = ["set pagination off", "set confirm off", f"python exec({CAPTURE!r})"] + script
    for i, command in enumerate(commands):
        lines += [f"echo {MARK}{i}\\n", f"python capture({command!r})"]
    lines += [f"echo {MARK}end\\n"]
    r = gdb_batch(lines, program)
    no_traceback(r.stdout + r.stderr)
    stops: List[Dict[str, str]] = [{}]
    for piece in r.stdout.split(MARK)[1:]:
        number, _, body = piece.partition("\n")
        if number != "end":
            stops[-1][commands[int(number)]] = body
            if commands[int(number)] == "continue":
                stops.append({})
    return stops, r.stdout


def printed(path: str) -> Dict[str, List[str]]:
    with open(path) as f:
        return {" ".join(line.split()[1:3]): line.split()[3:] for line in f if line.startswith("@ ")}


def threads_in(bt: str) -> Dict[int, Tuple[int, List[str]]]:
    """`thread apply all bt`: gdb's thread number -> (LWP, function names innermost first)."""
    out: Dict[int, Tuple[int, List[str]]] = {}
    for block in re.split(r"\n(?=Thread \d+ )", "\n" + bt):
        m = re.match(r"Thread (\d+) \(.*?LWP (\d+)", block)
        if m:
            names = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) ", block, re.M)
            out[int(m.group(1))] = (int(m.group(2)), names)
    return out


# The worker's arena lock: through its thread_arena (TLS); a gdb without TLS support for the
# inferior (gdb 10 + glibc 2.36) reads it as the only arena besides main_arena (midfree.c: the
# worker's first malloc gives it an arena of its own), main_arena.next.
THREAD_ARENA_LOCK = "p ((struct malloc_state *) thread_arena)->mutex"
OTHER_ARENA_LOCK = "p main_arena.next->mutex"


@pytest.fixture(scope="module")
def mid_free():
    """The live session (at the checkpoint, then mid-free, then carrying on to the end) and the
    same commands on a core written mid-free."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_midfree.") as tmp:
        out, err, core = (os.path.join(tmp, name) for name in ("program.out", "program.err", "core"))
        program = sample("midfree")
        at_checkpoint = ["heap check --json", "heap bins --json", "heap", "heap check"] + TRUTH
        mid = TEXT + JSON + TRUTH + [THREAD_ARENA_LOCK, OTHER_ARENA_LOCK]
        commands = at_checkpoint + ["watch -l *watch_here", "delete 1", "continue"] + mid + [
            f"generate-core-file {core}", "delete", "continue"]
        (checkpoint, outputs, _), whole = captured(["break checkpoint", f"run > {out} 2> {err}"], commands, program)
        facts = printed(out)
        with open(err) as f:
            stderr = f.read()
        core_out: Dict[str, str] = {}
        if os.path.exists(core):
            (core_out,), _ = captured([f"core-file {core}"], JSON + TRUTH + ["heap", "heap check"], program)
        yield {"checkpoint": checkpoint, "outputs": outputs, "whole": whole, "facts": facts, "stderr": stderr,
               "core": core_out}


def worker_lwp(r) -> int:
    return int(r["facts"]["tid worker"][0])


# What gdb's backtraces name, glibc's internal "__GI_" alias dropped: malloc's and free's own
# functions (with libc's debug symbols), or only the exported entry points (without).  From
# glibc 2.41 _int_free is split: _int_free_chunk, _int_free_merge_chunk, _int_free_create_chunk.
ALLOCATOR = {"malloc", "__libc_malloc", "_int_malloc", "free", "__libc_free", "_int_free", "calloc", "realloc",
             "_int_free_chunk", "_int_free_merge_chunk", "_int_free_create_chunk"}


# A static program with libc's ELF symbols stripped: glibc's functions have no name at all, so
# neither gdb's backtraces (the truth) nor gdb_heap can tell that a thread is inside free.
NAMES_GLIBC = pytest.mark.skipif(CONFIG.static and not CONFIG.symbols,
                                 reason="static with libc's ELF symbols stripped: no frame inside glibc has a name")


def named_by_gdb(frames: List[str]) -> List[str]:
    names = [re.sub(r"^__GI_", "", n) for n in frames]
    return [n for n in names if n in ALLOCATOR]


def test_the_program_finishes_the_free_and_exits_normally(mid_free):
    """glibc completes the free it was stopped in: the heap was healthy."""
    assert "exited normally" in mid_free["whole"]
    assert "free a" in mid_free["facts"] and "checkpoint 1" in mid_free["facts"]
    assert "done" in mid_free["facts"] and mid_free["stderr"] == ""


def test_a_normal_stop_has_no_note(mid_free):
    """At the checkpoint no thread is inside the allocator (gdb's backtraces say so)."""
    o = mid_free["checkpoint"]
    threads = threads_in(o["thread apply all bt"])
    assert threads and not any(named_by_gdb(frames) for _, frames in threads.values())
    assert json_doc(o["heap check --json"])["in_progress"] == []
    assert json_doc(o["heap bins --json"])["in_progress"] == []
    for command in ("heap", "heap check"):
        assert "mid-update" not in o[command] and "in progress" not in o[command]
        assert not o[command].startswith("ERROR")


def skip_unless_named(inside) -> None:
    if not inside and not CONFIG.symbols:  # e.g. 2.31: free tail-calls _int_free, a local function
        pytest.skip(f"glibc {CONFIG.version} without libc's debug symbols: gdb's backtrace names none of the "
                    "thread's allocator frames (local functions, such as _int_free, that only debug symbols name)")


def in_progress_truth(o) -> Tuple[int, int, List[str]]:
    """gdb's own backtraces mid-free: exactly the worker is inside the allocator."""
    threads = threads_in(o["thread apply all bt"])
    inside = {n: (lwp, named_by_gdb(frames)) for n, (lwp, frames) in threads.items() if named_by_gdb(frames)}
    skip_unless_named(inside)
    assert len(inside) == 1, o["thread apply all bt"]
    ((number, (lwp, names)),) = inside.items()
    return number, lwp, names


def check_json(o, lwp: int, names: List[str], program_facts) -> None:
    check = json_doc(o["heap check --json"])
    (call,) = check["in_progress"]
    assert (call["lwp"], call["function"], call["entry"]) == (lwp, names[0], names[-1])
    assert call["locked"] and not call["aborting"]
    # The worker's arena: the one holding its chunks (the pointers it printed).
    a = int(program_facts["ptr a"][0], 16)
    (arena,) = [x for x in json_doc(o["heap --json"])["arenas"]
                if any(h["start"] <= a < h["end"] for h in x["heaps"])]
    assert call["arena"] == arena["address"] == check["arena"]
    # The half-done free: guard's PREV_INUSE is clear while `a` is in no bin.  Marked.
    guard = int(program_facts["ptr guard"][0], 16)
    S = 8 if CONFIG.arch == "amd64" else 4
    (p,) = check["problems"]
    assert p["address"] == guard - 2 * S and p["maybe_in_progress"] is True
    for command in ("heap bins --json", "heap chunks --json", "heap --json"):
        assert json_doc(o[command])["in_progress"] == [call], command
    docs = json_doc(o["heap check --all-arenas --json"])["arenas"]
    assert [d["arena"] for d in docs if d["problems"]] == [arena["address"]]
    assert all(x["maybe_in_progress"] for d in docs for x in d["problems"])


@NAMES_GLIBC
def test_mid_free_names_the_thread_and_its_function(mid_free):
    o = mid_free["outputs"]
    number, lwp, names = in_progress_truth(o)
    assert lwp == worker_lwp(mid_free)
    if CONFIG.symbols:
        assert names[0].startswith("_int_free"), names
    check_json(o, lwp, names, mid_free["facts"])
    if not CONFIG.two_runs:  # gdb reads the arena's lock through libc's debug info (a static one has none)
        lock = o[THREAD_ARENA_LOCK]
        if "Cannot find thread-local" in lock:
            lock = o[OTHER_ARENA_LOCK]
        assert re.search(r"= [12]\b", lock), lock


@NAMES_GLIBC
def test_every_command_says_so_and_check_does_not_fail(mid_free):
    o = mid_free["outputs"]
    number, lwp, names = in_progress_truth(o)
    for command in TEXT:
        if command == "heap check --strict":
            continue  # it ends with an error, and gdb.execute(to_string=True) then drops what it printed
        text = tool_text(o[command])
        notes = [line for line in text.splitlines() if line.startswith(WARNING) and f"LWP {lwp}" in line]
        assert len(notes) == 1, (command, text)
        assert f"thread {number} (LWP {lwp}) is in {names[0]}" in notes[0] and "update in progress" in notes[0]
    check = o["heap check"]
    assert not check.startswith("ERROR"), check  # a CI job does not fail on a healthy heap mid-free
    assert "1 problem, which may be glibc's update in progress" in check and "[may be glibc's update" in check
    assert o["heap check --strict"].startswith("ERROR") and "1 problem found" in o["heap check --strict"]


@NAMES_GLIBC
def test_a_core_written_mid_free_says_the_same(mid_free):
    o = mid_free["core"]
    if not o:
        pytest.skip("gdb wrote no core file")
    number, lwp, names = in_progress_truth(o)
    assert lwp == worker_lwp(mid_free)
    check_json(o, lwp, names, mid_free["facts"])
    assert not o["heap check"].startswith("ERROR")
    assert f"thread {number} (LWP {lwp}) is in {names[0]}" in o["heap"]


@NAMES_GLIBC
def test_glibc_aborting_inside_free_is_damage_not_an_update():
    """With `damage` the worker clears guard's PREV_INUSE itself before free(a): glibc aborts in
    _int_free with "double free or corruption (!prev)" (its stderr says so); stopped on that
    SIGABRT the thread is inside free, but aborting: the problem counts."""
    with tempfile.TemporaryDirectory(prefix="gdb_heap_midfree.") as tmp:
        out, err = os.path.join(tmp, "program.out"), os.path.join(tmp, "program.err")
        (o,), _ = captured([f"run damage > {out} 2> {err}"],
                        ["heap check --json", "heap check", "heap"] + TRUTH, sample("midfree"))
        with open(err) as f:
            assert "double free or corruption (!prev)" in f.read()
    threads = threads_in(o["thread apply all bt"])
    inside = [(lwp, frames) for n, (lwp, frames) in threads.items() if named_by_gdb(frames)]
    skip_unless_named(inside)
    assert len(inside) == 1
    lwp, frames = inside[0]
    assert "abort" in [re.sub(r"^__GI_", "", n) for n in frames]  # gdb sees glibc aborting in that thread
    check = json_doc(o["heap check --json"])
    (call,) = check["in_progress"]
    assert call["lwp"] == lwp and call["aborting"] is True
    (p,) = check["problems"]
    assert p["glibc_abort"] == "double free or corruption (!prev)" and p["maybe_in_progress"] is False
    assert o["heap check"].startswith("ERROR") and "1 problem found" in o["heap check"]
    assert "glibc found damage there and is aborting" in o["heap"]


# -- gdb-free: in_progress.find on records made up by hand ---------------------------------------

def test_find_names_innermost_and_entry_and_strips_gi():
    mid = in_progress.find([ThreadFrames(2, 102, ["_int_free", "__GI___libc_free", "worker", None], 0x1000),
                            ThreadFrames(1, 101, ["__futex_abstimed_wait_common64", "main"])], [0x1000])
    (c,) = mid.calls
    assert (c.thread, c.lwp, c.function, c.entry, c.arena, c.arena_from, c.locked, c.aborting) == (
        2, 102, "_int_free", "__libc_free", 0x1000, "frame", True, False)
    assert mid.mark(0x1000) == "thread 2 (LWP 102) is in _int_free (called by __libc_free)"
    assert mid.mark(0x2000) is None


def test_find_guesses_the_arena_from_the_one_held_mutex_else_thread_arena():
    no_names = ThreadFrames(3, 103, [None, "free", "worker"], None, 0x3000)
    (c,) = in_progress.find([no_names], [0x2000]).calls
    assert (c.function, c.arena, c.arena_from, c.locked) == ("free", 0x2000, "mutex", True)
    (c,) = in_progress.find([no_names], []).calls
    assert (c.arena, c.arena_from, c.locked) == (0x3000, "thread_arena", False)
    two = in_progress.find([no_names, ThreadFrames(4, 104, ["malloc"], None, 0x4000)], [0x2000, 0x5000]).calls
    assert [(c.arena, c.arena_from) for c in two if c.thread] == [(0x3000, "thread_arena"), (0x4000, "thread_arena")]
    # Held mutexes no thread inside the allocator accounts for: a record each, which marks the arena.
    assert [(c.thread, c.arena, c.locked) for c in two if c.thread is None] == [(None, 0x2000, True),
                                                                                (None, 0x5000, True)]
    assert "mutex is held" in (in_progress.find([], [0x2000]).mark(0x2000) or "")


def test_find_aborting_and_tcache_and_unknown_arena():
    aborting = ThreadFrames(1, 101, ["__pthread_kill_implementation", "raise", "abort", "__libc_message",
                                     "malloc_printerr", "_int_free", "free", "main"], 0x1000)
    (c,) = in_progress.find([aborting], [0x1000]).calls
    assert c.aborting and c.function == "_int_free" and "aborting" in in_progress.note(c)
    assert in_progress.find([aborting], [0x1000]).mark(0x1000) is None
    (c,) = in_progress.find([ThreadFrames(1, 101, ["tcache_put", "_int_free", "free"])], []).calls
    assert (c.function, c.entry, c.arena) == ("tcache_put", "free", None)
    mid = in_progress.find([ThreadFrames(1, 101, ["tcache_put", "_int_free", "free"])], [])
    assert mid.mark(0x1234) and mid.mark(0x5678)  # no arena known: every arena may be changing
    deep = ThreadFrames(1, 101, ["f"] * in_progress.FRAMES + ["malloc"])
    assert in_progress.find([deep], []).calls == []  # beyond the frames looked at


def test_check_marks_every_problem_of_an_arena_whose_mutex_is_held():
    """A synthetic heap with top's size smashed: damage, until its arena's mutex (malloc_state's
    first field, an int) says a thread holds it; then the same problem is listed, marked, and
    not counted."""
    b = HeapBuilder()
    b.chunk(0x20)
    s = b.build()
    s.poke(s.top + 8, 0xFFFFFFFFFFFFFFFF)
    report = check_arena(s.heap(), s.heap().main_arena)
    assert (len(report.problems), report.damage, report.in_progress) == (1, 1, None)
    s.poke(s.arena, 1, 4)
    heap = s.heap()
    report = check_arena(heap, heap.main_arena)
    assert len(report.problems) == 1 and report.damage == 0
    assert report.in_progress == f"arena {s.arena:#x}'s mutex is held"
    doc: Any = render.check_doc(report, heap.mid_update)
    assert doc["problems"][0]["maybe_in_progress"] is True
    assert doc["in_progress"] == [{"thread": None, "lwp": None, "function": None, "entry": None, "arena": s.arena,
                                   "arena_from": "mutex", "locked": True, "aborting": False}]
    lines = list(render.check_lines(report, Style(False)))
    assert "1 problem, which may be glibc's update in progress" in lines[0]
    assert lines[1].endswith(f"[may be glibc's update in progress: arena {s.arena:#x}'s mutex is held]")
