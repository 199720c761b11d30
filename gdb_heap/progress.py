"""A long command's progress: one line on the terminal, updated in place, the share of the
heap walked so far.  Shown only once the command has run for DELAY seconds, only where a
person watches (the commands decide: a terminal, not batch mode, not --json), and erased
when the command ends, so the output that follows is unchanged.

gdb-free: the writer and the clock are given, so tests drive it without a terminal or time.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

DELAY = 2.0  # seconds before the first progress line: a quick command shows none
EVERY = 0.25  # seconds between updates


class Progress:
    def __init__(self, write: Optional[Callable[[str], None]], clock: Callable[[], float] = time.monotonic) -> None:
        """write=None: no progress is ever shown (batch mode, --json, no terminal)."""
        self.write = write
        self.clock = clock
        self.start = clock()
        self.next = self.start + DELAY
        self.shown = 0  # characters of the line now on the terminal

    def walked(self, done: int, total: int) -> None:
        """`done` of `total` bytes of heap walked."""
        if self.write is None:
            return
        now = self.clock()
        if now < self.next or total <= 0:
            return
        self.next = now + EVERY
        text = f"heap: walked {min(100, 100 * done // total)}% of the heap (Ctrl-C stops)"
        self.write("\r" + text.ljust(self.shown))
        self.shown = len(text)

    def end(self) -> None:
        if self.write is not None and self.shown:
            self.write("\r" + " " * self.shown + "\r")
            self.shown = 0


QUIET = Progress(None)
