"""The `heap` gdb commands: parse arguments, ask the gdb-free side, hand the data to a renderer.

One module per family (overview: heap, arenas, top, mmapped; chunks: chunks, chunk; bins;
check), the shared plumbing in base.py, the settings in settings.py.  Which commands exist, and
their options, is registry.py's: register() creates one gdb command per registry entry.
"""

from __future__ import annotations

from .. import registry
from . import bins, check, chunks, overview, snapshot  # noqa: F401  (their @implements fill base.CLASSES)
from .base import CLASSES
from .settings import AddressSetting, HeapSet, HeapShow
from .snapshot import connect_events


def register() -> None:
    connect_events()
    HeapSet()
    HeapShow()
    AddressSetting("main-arena", "main_arena")
    AddressSetting("mp", "mp_")
    missing = [c.name for c in registry.COMMANDS if c.name not in CLASSES]
    if missing:
        raise RuntimeError(f"gdb_heap: no class implements {', '.join(missing)}")
    for spec in registry.COMMANDS:  # "heap" first: it is the prefix of the others
        CLASSES[spec.name]()
