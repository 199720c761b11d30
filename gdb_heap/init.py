"""Entry point: `source gdb_heap/init.py` in gdb registers the `heap` commands.

Works however gdb gets here: the prompt, -ex, -x, ~/.gdbinit, a sourced gdb script, or
gdb.execute("source ...") inside a sourced Python script.  In that last case gdb leaves
`__file__` naming the outer script, so this file finds itself through its own code object,
whose filename is always the file gdb is running.
"""

import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
if _here not in sys.path:
    sys.path.insert(0, _here)

import gdb_heap.commands  # noqa: E402

gdb_heap.commands.register()
