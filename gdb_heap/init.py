"""Entry point: `source gdb_heap/init.py` in gdb (or `python import gdb_heap.init` when the
package is installed) registers the `heap` commands, the $heap_* functions and the
pretty-printers of glibc's malloc structs.

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
import gdb_heap.functions  # noqa: E402
import gdb_heap.printers  # noqa: E402

gdb_heap.commands.register()
gdb_heap.functions.register()
gdb_heap.printers.register()
