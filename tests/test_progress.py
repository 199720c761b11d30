"""Progress on long commands: shown on a terminal after a delay, never in batch mode or with
--json; Ctrl-C stops a long command with one line and leaves the program as it was."""

import os
from typing import List, Tuple

from gdb_heap.progress import DELAY, Progress
from tests.gdbrun import gdb_batch, host_only, no_traceback, sample
from tests.test_gdb_features import PROMPT, Terminal, clean

pytestmark = host_only("progress and Ctrl-C on a terminal")


class Clock:
    """A clock the test moves by hand: no timing."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_waits_for_the_delay_then_updates_one_line_and_erases_it():
    shown: List[str] = []
    clock = Clock()
    p = Progress(shown.append, clock)
    p.walked(10, 100)
    assert shown == []  # a quick command shows nothing
    clock.now += DELAY + 0.01
    p.walked(25, 100)
    assert shown == ["\rheap: walked 25% of the heap (Ctrl-C stops)"]
    clock.now += 1
    p.walked(50, 100)
    assert shown[-1].startswith("\rheap: walked 50% ")  # the same line, rewritten in place
    p.end()
    assert shown[-1] == "\r" + " " * (len(shown[-2]) - 1) + "\r"  # erased: the output after it is unchanged


def test_no_progress_without_a_writer():
    clock = Clock()
    p = Progress(None, clock)
    clock.now += 1000
    p.walked(1, 2)
    p.end()
    assert p.shown == 0


def test_batch_mode_and_json_show_no_progress():
    # 200000 chunks: long enough to walk that a terminal would get progress lines if it were one.
    g = gdb_batch(["break checkpoint", "run 200000 > /dev/null", "heap chunks --summary", "heap chunks --json"],
                  sample("many"))
    assert "heap: walked" not in g.stdout + g.stderr and "\r" not in g.stderr
    no_traceback(g.stdout + g.stderr)


def ctrl_c_during_heap_chunks() -> Tuple[List[str], List[str]]:
    """gdb's lines from Ctrl-C in `heap chunks`'s walk (3 * 10^6 chunks: a listing that
    takes longer than progress's delay) to the prompt, and the lines of `continue` after it."""
    t = Terminal(sample("many"))
    try:
        t.until(PROMPT)
        for command in ("set style enabled off", "set pagination off", "break checkpoint",
                        "run 3000000 > /dev/null"):
            t.send(command)
            t.until(PROMPT)
        t.send("pipe heap chunks | tail -1")
        t.until("heap: walked")  # the progress line: the command is in its walk

        os.write(t.fd, b"\x03")
        stopped = clean(t.until(PROMPT))
        t.send("continue")
        after = clean(t.until(PROMPT))
    finally:
        t.close()
    return stopped, after


def test_ctrl_c_stops_a_long_command_and_the_program_carries_on():
    stopped, after = ctrl_c_during_heap_chunks()
    assert any(line.strip().endswith("heap: interrupted") for line in stopped), "\n".join(stopped)
    no_traceback("\n".join(stopped))
    assert any("exited normally" in line for line in after)  # untouched: it runs to its end
