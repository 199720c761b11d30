"""Entry point: `source gdb_heap/init.py` in gdb registers the `heap` commands."""

import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _here not in sys.path:
    sys.path.insert(0, _here)

import gdb_heap.commands  # noqa: E402

gdb_heap.commands.register()
