"""The forked helper (gdb_heap/helper.py) that follows a big heap's bins while gdb walks it:
its answers, its failures (each one falls back to gdb's own work), reading a process's memory
through /proc/PID/mem, and on a live heap of 100,000 chunks the same output as without it."""

import ctypes
import os
import re
import subprocess
import time

import pytest

from gdb_heap import helper, model
from gdb_heap.errors import HeapError, MemoryReadError
from gdb_heap.memory import FileMemory
from tests.gdbrun import GDB, INIT, gdb_batch, host_only, json_doc, no_traceback, sample

# The helper is gdb_heap's own machinery: it follows any glibc's bins with the code the matrix
# tests, so the host's glibc is enough here.
pytestmark = host_only("the helper is the same on every glibc")


def reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_childs_answer_comes_back_and_the_child_is_reaped():
    big = list(range(300_000))  # more than a pipe holds: the parent drains while the child writes
    job = helper.start(lambda: ("answer", big))
    assert job is not None
    assert job.result() == ("answer", big)
    assert reaped(job.pid)


def slow_seven() -> int:
    time.sleep(0.5)
    return 7


def test_ready_only_once_the_child_has_its_answer():
    job = helper.start(slow_seven)
    assert job is not None
    assert not job.ready()
    deadline = time.monotonic() + 30
    while not job.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.ready()
    assert job.result() == 7


def fails():
    raise RuntimeError("damaged")


def test_a_child_that_fails_answers_none():
    job = helper.start(fails)
    assert job is not None and job.result() is None and reaped(job.pid)


def test_a_child_that_dies_answers_none():
    job = helper.start(lambda: os._exit(3))
    assert job is not None and job.result() is None and reaped(job.pid)


def test_a_child_that_takes_too_long_is_killed(monkeypatch):
    monkeypatch.setattr(helper, "PATIENCE", 0.3)
    job = helper.start(lambda: time.sleep(60))
    assert job is not None
    t0 = time.monotonic()
    assert job.result() is None
    assert time.monotonic() - t0 < 20 and reaped(job.pid)


def test_cancel_kills_and_reaps_a_working_child():
    job = helper.start(lambda: time.sleep(60))
    assert job is not None
    job.cancel()
    assert reaped(job.pid)
    job.cancel()  # twice: nothing more to do
    assert job.result() is None


def test_file_memory_reads_exactly_what_is_there():
    buf = ctypes.create_string_buffer(b"gdb_heap reads this" * 10)
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        memory = FileMemory(fd)
        at = ctypes.addressof(buf)
        assert bytes(memory.read(at, 30)) == (b"gdb_heap reads this" * 2)[:30]
        for address in (0, 1 << 63, (1 << 64) - 16):  # unmapped; offsets pread refuses
            with pytest.raises(MemoryReadError):
                memory.read(address, 16)
        assert not memory.missing(at)
    finally:
        os.close(fd)


def test_a_child_goes_on_after_its_answer_and_says_whether_it_did_all(tmp_path):
    out = tmp_path / "then"

    def then(answer):
        time.sleep(0.3)  # still at it when the parent has the answer
        out.write_text(f"after {answer}")

    job = helper.start(lambda: 7, then)
    assert job is not None
    assert job.result() == 7
    assert not reaped(job.pid) and not out.exists()  # the answer did not stop it
    assert job.finished()
    assert out.read_text() == "after 7" and reaped(job.pid)
    assert not job.finished()  # once only


def test_a_child_that_fails_after_its_answer_is_not_finished():
    job = helper.start(lambda: 7, lambda answer: fails())
    assert job is not None
    assert job.result() == 7
    assert not job.finished()
    assert reaped(job.pid)


def test_a_cancelled_child_is_not_finished():
    job = helper.start(lambda: 7, lambda answer: time.sleep(60))
    assert job is not None
    assert job.result() == 7
    job.cancel()
    assert reaped(job.pid) and not job.finished()


def test_a_child_cannot_call_gdb(monkeypatch):
    import sys
    import types
    fake = types.ModuleType("gdb")
    fake.execute = lambda command: "done"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gdb", fake)
    job = helper.start(lambda: sys.modules["gdb"].execute("echo"))  # refused in the child: it fails
    assert job is not None
    assert job.result() is None
    assert fake.execute("echo") == "done"  # the parent's is untouched


# -- in gdb ------------------------------------------------------------------------------------

COMMANDS = ["heap chunks --summary --json", "heap chunks --summary", "heap --json", "heap chunks --json",
            "heap chunks", "heap check --json", "heap check"]
MARK = "@@helper@@"
# Counts the helper's jobs and their answers (Job.result not None) in gdb's Python.
COUNT = """import gdb_heap.helper as h
h.runs = []
_result = h.Job.result
def result(self):
    answer = _result(self)
    h.runs.append(answer is not None)
    return answer
h.Job.result = result
h.tails = []  # Job.finished: whether a helper did the tail of a listing
_finished = h.Job.finished
def finished(self):
    done = _finished(self)
    h.tails.append(done)
    return done
h.Job.finished = finished
"""


def outputs():
    """Each command's output with the helper (its default threshold), then without it (set heap
    helper-min 0), in one session (the same process: the same LWPs and tcache key); and the
    helper's answers, after each half."""
    script = ["set pagination off", "break checkpoint", "run 100000", f"python exec({COUNT!r})",
              f"echo {MARK}connection\\n", "python print(hasattr(gdb.selected_inferior(), 'connection'))"]
    # (the kept batches' addresses only for the first 64 KiB of them: both ways of keeping them)
    script.append("python import gdb_heap.heap as H; H.KEEP_ADDRESSES = 1 << 16")
    for half, helper_min in (("helped", "32"), ("alone", "0")):
        script.append(f"set heap helper-min {helper_min}")
        for i, command in enumerate(COMMANDS):
            script += [f"echo {MARK}{half} {i}\\n", command]
        script += [f"echo {MARK}{half} runs\\n", "python print(h.runs); h.runs.clear()"]
        script += [f"echo {MARK}{half} tails\\n", "python print(h.tails); h.tails.clear()"]
    r = gdb_batch(script, sample("many"))
    no_traceback(r.stdout + r.stderr)
    pieces = r.stdout.split(MARK)
    out = {p.partition("\n")[0]: p.partition("\n")[2] for p in pieces[1:]}
    out["facts"] = pieces[0]  # what the sample printed of itself: "@ many N ALLOCATED FREED"
    return out


@pytest.fixture(scope="module")
def both():
    return outputs()


def test_a_big_heap_has_its_bins_followed_by_the_helper(both):
    # Each command that walks and follows the bins (summary twice, heap, the two listings, check
    # twice) asked a helper and took its answer; with set heap helper-min 0, none did.
    # Before gdb 12 (no Inferior.connection: a core or a remote target cannot be told apart)
    # there is no helper.
    helped = both["connection"].strip() == "True"
    assert eval(both["helped runs"]) == [True] * 7 * helped
    assert eval(both["alone runs"]) == []
    # and the tail of the walk (the second half of both listings, JSON and text) was the
    # helper's (the same output: the next test); a summary and `heap` have none: the helper
    # counts the bins' chunks, the walk vouches for them
    assert eval(both["helped tails"]) == [True] * 2 * helped
    assert eval(both["alone tails"]) == []


def test_the_helper_changes_nothing_in_the_output(both):
    for i, command in enumerate(COMMANDS):
        assert both[f"helped {i}"] == both[f"alone {i}"], command
    summary = json_doc(both["helped 0"])["summary"]
    assert sum(r["count"] for r in summary if r["state"] == "free") > 20_000  # a quarter freed: bins full
    assert len(json_doc(both["helped 3"])["chunks"]) > 100_000
    assert json_doc(both["helped 5"])["problems"] == []  # a healthy heap
    # Every chunk the sample freed is in a bin (it frees none next to another: nothing merges),
    # and the walk met every chunk it allocated.
    said = re.search(r"@ many 100000 (\d+) (\d+)", both["facts"])
    assert said, both["facts"]
    allocated, freed = map(int, said.groups())
    m = re.search(r"no problems found \((\d+) chunks walked, (\d+) chunks in bins checked\)", both["helped 6"])
    assert m, both["helped 6"]
    assert int(m.group(2)) == freed and int(m.group(1)) > allocated


def test_no_helper_on_one_processor():
    # gdb (and so its children) allowed one processor: no helper, the same summary
    argv = ["taskset", "-c", "0"] + list(GDB) + ["-ex", f"source {INIT}"]
    for c in ["break checkpoint", "run 100000 > /dev/null", f"python exec({COUNT!r})",
              "heap chunks --summary --json", "python print('runs', h.runs)"]:
        argv += ["-ex", c]
    p = subprocess.run(argv + [sample("many")], capture_output=True, text=True, timeout=300)
    no_traceback(p.stdout + p.stderr)
    assert "runs []" in p.stdout
    assert sum(r["count"] for r in json_doc(p.stdout)["summary"]) > 100_000


def test_no_helper_on_a_core_file(tmp_path):
    core = str(tmp_path / "core")
    program = sample("many")
    r = gdb_batch(["break checkpoint", "run 1000 > /dev/null", f"generate-core-file {core}",
                   "python from gdb_heap.gdbmemory import process_memory_file as f",
                   "python print('live', f(int(gdb.parse_and_eval('$sp'))) is not None, f(0), "
                   "hasattr(gdb.selected_inferior(), 'connection'))",
                   "kill", f"core-file {core}",
                   "python print('core', f(int(gdb.parse_and_eval('$sp'))))"], program)
    no_traceback(r.stdout + r.stderr)
    # The file reads what gdb reads; address 0 is not readable.  Before gdb 12 (no connection
    # to tell a live process from a core or a remote target): no file.
    assert "live True None True" in r.stdout or "live False None False" in r.stdout
    assert "core None" in r.stdout


# -- the batches kept while the helper works ----------------------------------------------------

@pytest.mark.parametrize("addresses, sizes, running", [
    ([0x1000, 0x1020, 0x1050, 0x1100], [0x21, 0x31, 0xb1, 0x20d01], True),
    ([0x1000, 0x1020, 0x2000], [0x21, 0x31, 0x41], False),  # a gap (damage, a resumed walk)
    ([0x1000, 0x1000 + (5 << 32)], [(5 << 32) | 1, 0x21], True),  # a size past 32 bits
    ([0x5000], [0x20d01], True),  # top alone
    ([], [], True),
])
@pytest.mark.parametrize("keep_addresses", [True, False])
def test_a_kept_batch_comes_back_as_it_was(addresses, sizes, running, keep_addresses):
    packed = model.pack_batch(addresses, sizes, keep_addresses)
    assert (packed[3] is None) == (bool(addresses) and not keep_addresses)  # 8 bytes a chunk saved
    if sizes and max(sizes) < 1 << 32:
        assert packed[2].itemsize == 4  # 4 bytes a size field where the sizes allow it
    if keep_addresses or running:
        assert model.unpack_batch(packed) == (addresses, sizes)


def test_a_kept_batch_that_is_no_running_sum_is_refused():
    # (the walk never gives one: a batch's addresses are its sizes' running sum)
    with pytest.raises(HeapError, match="internal error"):
        model.unpack_batch(model.pack_batch([0x1000, 0x1020, 0x2000], [0x21, 0x31, 0x41], keep_addresses=False))


def test_sizes_counted_as_walked_give_the_same_summary():
    # Heap.walk_and_index's `each` counts the size fields while the helper works; summarise then
    # counts only the free chunks: the rows are the same, up to the first empty batch as ever.
    from gdb_heap.free_index import FreeIndex
    batches = [([0x1000, 0x1020, 0x1050], [0x21, 0x31, 0xb1]), ([0x1100, 0x1130], [0x30, 0x21]),
               ([], []), ([0x2000], [0x41])]
    free = FreeIndex.of({0x1020: ("small", 2), 0x1100: ("fast", 1)})
    counted = model.SizeCount()
    for batch in batches:
        counted(batch)
    rows = model.summarise(batches, 0x1130, free, every=counted.every)
    assert rows == model.summarise(batches, 0x1130, free)
    counted = model.SizeCount()  # counted while summarise takes them: read at the end

    def counting():
        for batch in batches:
            counted(batch)
            yield batch

    assert model.summarise(counting(), 0x1130, free, every=counted.every) == rows
    assert rows == {("in_use", None, 0x20): 1, ("free", "small", 0x30): 1, ("in_use", None, 0xb0): 1,
                    ("free", "fast", 0x30): 1, ("top", None, 0x20): 1}  # by hand; 0x2000 after the empty batch


def test_the_helped_summary_against_malloc_info():
    # 100,000 chunks (a 43 MB arena: the helper follows its bins and counts their chunks):
    # glibc's own malloc_info totals against the summary, and the helper asked and answering
    from tests.gdbrun import doc, probe
    from tests.test_live import check_malloc_info, stage

    connection = "python print(hasattr(gdb.selected_inferior(), 'connection'))"
    result = probe(sample("many"), [f"python exec({COUNT!r})",
                                    "heap chunks --summary --json", "python print(h.runs, h.tails)",
                                    connection], args=["100000"])
    record = stage(result, 1)
    helped = record["commands"][connection]["out"].strip() == "True"  # (before gdb 12: no helper)
    said = record["commands"]["python print(h.runs, h.tails)"]["out"].strip()
    assert said == ("[True] []" if helped else "[] []")
    check_malloc_info(record, doc(record, "heap chunks --summary --json")["summary"])


# -- the listing's tail, when the helper's cannot stand ---------------------------------------

# In gdb: the helper's part of `heap chunks` spoilt one way (Python run after COUNT), then the
# listing with the helper and without it.
SPOIL = {
    # the chunk the helper begins at lies inside a chunk: gdb's walk never meets it
    "not a chunk": "import gdb_heap.heap as H; _s = H._tail_start\n"
                   "H._tail_start = lambda *a: None if _s(*a) is None else _s(*a) + 0x10",
    # the helper's part asks gdb for something: refused in the child, which fails
    # no temporary file for the helper's part (a read-only or missing temporary folder)
    "no temporary file": "import tempfile; tempfile.tempdir = '/nonexistent/gdb_heap'",
    "asks gdb": "import os, gdb_heap.model as M; P = os.getpid(); _w = M.walk_region_batches\n"
                "def w(*a):\n    os.getpid() == P or gdb.execute('echo')\n    return _w(*a)\n"
                "M.walk_region_batches = w",
}


@pytest.mark.parametrize("listing", ["heap chunks", "heap chunks --json"])
@pytest.mark.parametrize("how", sorted(SPOIL))
def test_a_spoilt_tail_is_gdbs_own_work(how, listing):
    script = ["set pagination off", "break checkpoint", "run 100000 > /dev/null", f"python exec({COUNT!r})",
              f"python exec({SPOIL[how]!r})", "python print(hasattr(gdb.selected_inferior(), 'connection'))"]
    for half, helper_min in (("helped", "32"), ("alone", "0")):
        script += [f"set heap helper-min {helper_min}", f"echo {MARK}{half}\\n", listing]
    script += [f"echo {MARK}runs\\n", "python print(h.runs, h.tails)"]
    r = gdb_batch(script, sample("many"))
    no_traceback(r.stdout + r.stderr)
    out = {p.partition("\n")[0]: p.partition("\n")[2] for p in r.stdout.split(MARK)[1:]}
    assert out["helped"] == out["alone"]
    chunks = len(json_doc(out["helped"])["chunks"]) if "--json" in listing else out["helped"].count("\n")
    assert chunks > 100_000
    helped = r.stdout.split(MARK)[0].strip().endswith("True")
    # the helper answered (it followed the bins); its tail was not taken: never met, or failed
    assert out["runs"].strip() == (f"[True] {[False] if how == 'asks gdb' else []}" if helped else "[] []")
    assert "Traceback" not in r.stderr and "heap:" not in out["helped"][:200]


def test_a_thread_arena_whose_older_heap_lies_above_the_newer_has_its_tail_done_by_the_helper():
    # `arenas big`: worker 1's arena outgrew its first heap; the new one, which holds top, was
    # mapped below it, so gdb's walk (oldest heap first) meets addresses past the helper's start
    # in the older heap before it reaches the newer one.  The helper's part (the newer heap's
    # end) is still taken there, and the listings are gdb's own, byte for byte.
    script = ["set pagination off", "break checkpoint", "run big > /dev/null", f"python exec({COUNT!r})",
              "python print(hasattr(gdb.selected_inferior(), 'connection'))", f"echo {MARK}arenas\\n",
              "heap arenas --json"]
    commands = ["heap chunks --all-arenas", "heap chunks --all-arenas --json", "heap chunks --all-arenas --summary"]
    for half, helper_min in (("helped", "1"), ("alone", "0")):
        script.append(f"set heap helper-min {helper_min}")
        for i, command in enumerate(commands):
            script += [f"echo {MARK}{half} {i}\\n", command]
    script += [f"echo {MARK}runs\\n", "python print(h.runs, h.tails)"]
    r = gdb_batch(script, sample("arenas"))
    no_traceback(r.stdout + r.stderr)
    out = {p.partition("\n")[0]: p.partition("\n")[2] for p in r.stdout.split(MARK)[1:]}
    heaps = [a for a in json_doc(out["arenas"])["arenas"] if len(a["heaps"]) > 1]
    assert len(heaps) == 1 and heaps[0]["heaps"][0]["start"] > heaps[0]["heaps"][-1]["start"], out["arenas"]
    for i, command in enumerate(commands):
        assert out[f"helped {i}"] == out[f"alone {i}"], command
    helped = r.stdout.split(MARK)[0].strip().endswith("True")
    # only that arena holds a MiB or more: one helper a command, and each listing took the tail
    # (a summary has none)
    assert out["runs"].strip() == ("[True, True, True] [True, True]" if helped else "[] []")
