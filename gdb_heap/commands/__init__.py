"""The `heap` gdb commands: parse arguments, ask the gdb-free side, hand the data to a renderer.

One module per family (overview: heap, arenas, top, mmapped; chunks: chunks, chunk; bins;
check; trace), the shared plumbing in base.py, the settings in settings.py.  Which commands exist, and
their options, is registry.py's: register() creates one gdb command per registry entry under
each of registry.PREFIXES ("heap chunks" and "gheap chunks").
"""

from __future__ import annotations

from typing import Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import registry
# Each family's @implements fills base.CLASSES.
from . import bins, check, chunks, overview, places, predict, snapshot, trace  # noqa: F401
from . import settings
from .base import CLASSES, MADE
from .snapshot import connect_events


def heap_owner() -> Optional[str]:
    """The first line of the help of another extension's `heap` command (GEF's, pwndbg's);
    None when `heap` is free or ours (sourcing gdb_heap again)."""
    try:
        # `help heap` alone would also answer for a longer command that `heap` abbreviates.
        names = gdb.execute("complete help heap", to_string=True).splitlines()
        if "help heap" not in (n.strip() for n in names):
            return None
        first = gdb.execute("help heap", to_string=True).strip().splitlines()
    except gdb.error:
        return None
    first_line = first[0] if first else ""
    return None if first_line == registry.PREFIX.summary else first_line


def register() -> None:
    connect_events()
    settings.register()
    missing = [c.name for c in registry.COMMANDS if c.name not in CLASSES]
    if missing:
        raise RuntimeError(f"gdb_heap: no class implements {', '.join(missing)}")
    theirs = heap_owner()
    prefixes = [p for p in registry.PREFIXES if not (theirs is not None and p == registry.PREFIX.name)]
    MADE.clear()  # sourced again: the new objects are the ones gdb runs
    for prefix in prefixes:
        for spec in registry.COMMANDS:  # the prefix first: the others are its subcommands
            CLASSES[spec.name](prefix)
    if theirs is not None:
        gdb.write(registry.taken_message(prefixes[0]) + "\n")
