"""progress.py's boundaries with a clock moved by hand (test_progress.py shows it on a terminal):
the first line exactly at DELAY (2 s), the next exactly EVERY (0.25 s) later, the share capped
at 100%, an empty heap, a shorter line padded over a longer one, end() once."""

from __future__ import annotations

from typing import List

from gdb_heap import progress
from gdb_heap.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_delay_and_interval_are_two_seconds_and_a_quarter():
    assert (progress.DELAY, progress.EVERY) == (2.0, 0.25)


def test_first_line_at_the_delay_then_every_quarter_second():
    shown: List[str] = []
    clock = Clock()
    p = Progress(shown.append, clock)
    clock.now = 51.999
    p.walked(1, 4)
    assert shown == []
    clock.now = 52.0  # exactly DELAY after the start: shown
    p.walked(1, 4)
    assert shown == ["\rheap: walked 25% of the heap (Ctrl-C stops)"]
    clock.now = 52.249
    p.walked(2, 4)
    assert len(shown) == 1
    clock.now = 52.25  # exactly EVERY later
    p.walked(2, 4)
    assert shown[-1] == "\rheap: walked 50% of the heap (Ctrl-C stops)"
    clock.now = 52.5
    p.walked(5, 4)  # past the end (the heap grew): 100% at most
    assert shown[-1] == "\rheap: walked 100% of the heap (Ctrl-C stops)"
    assert p.shown == len("heap: walked 100% of the heap (Ctrl-C stops)")
    clock.now = 52.75
    p.walked(1, 300)  # 0%: the shorter line is padded over the longer one
    assert shown[-1] == "\rheap: walked 0% of the heap (Ctrl-C stops)  "
    assert p.shown == len("heap: walked 0% of the heap (Ctrl-C stops)")
    p.end()
    assert shown[-1] == "\r" + " " * len("heap: walked 0% of the heap (Ctrl-C stops)") + "\r"
    assert p.shown == 0
    n = len(shown)
    p.end()  # erased once
    assert len(shown) == n


def test_share_is_rounded_down():
    shown: List[str] = []
    clock = Clock()
    p = Progress(shown.append, clock)
    clock.now += 10
    p.walked(2, 3)  # 66.6%
    assert shown == ["\rheap: walked 66% of the heap (Ctrl-C stops)"]


def test_an_empty_heap_shows_nothing():
    shown: List[str] = []
    clock = Clock()
    p = Progress(shown.append, clock)
    clock.now += 10
    p.walked(0, 0)
    p.walked(0, -1)
    assert shown == [] and p.shown == 0
    p.walked(0, 1)
    assert shown == ["\rheap: walked 0% of the heap (Ctrl-C stops)"]


def test_end_without_a_line_writes_nothing():
    shown: List[str] = []
    p = Progress(shown.append, Clock())
    p.end()
    assert shown == []


def test_quiet_never_writes():
    assert progress.QUIET.write is None
    progress.QUIET.walked(1, 2)
    progress.QUIET.end()
    assert progress.QUIET.shown == 0


def test_the_default_clock_is_monotonic():
    import time
    assert Progress(None).clock is time.monotonic
