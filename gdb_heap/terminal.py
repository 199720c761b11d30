"""Whether the heap commands' output may carry colour: as gdb decides for its own output,
only where it reaches a terminal, never where gdb captures it.

gdb's Python cannot ask gdb's output stream whether it can show styles, so this reads what
gdb leaves visible: inside `pipe`, `gdb.execute(..., to_string=True)` and batch mode gdb makes
both height and width unlimited; an MI front end's console stream (height unlimited, a width
kept) is a pipe, not a terminal.  `set style enabled off` turns colour off everywhere.
"""

from __future__ import annotations

import os

import gdb  # type: ignore[import-not-found,unused-ignore]


def colour_wanted() -> bool:
    try:
        if not gdb.parameter("style enabled"):
            return False
        height, width = gdb.parameter("height"), gdb.parameter("width")
    except (gdb.error, RuntimeError):
        return False
    # A height set: a terminal session (or a script that says it wants one).  Height unlimited
    # (`set height 0`, MI): a width kept and gdb's stdout a terminal.  Both unlimited: captured.
    return height is not None or (width is not None and os.isatty(1))
