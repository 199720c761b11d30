"""Giving back to the kernel the memory a command freed in gdb's own process.

A command on a big heap allocates and frees hundreds of megabytes (walk batches, the bins'
runs, the helper's answer).  glibc's malloc in gdb keeps freed memory for reuse rather than
returning it, so gdb's resident size would stay at the biggest command's peak, and each
snapshot kept would stack on top of that (at 10^7 chunks, 150 MB of free memory stayed behind
each command).  glibc's malloc_trim(0) returns every free page of every arena in gdb's own
process (never the inferior's: this is gdb's libc); it costs 0.01-5 ms.  Where gdb's C library
has no malloc_trim (not glibc), nothing is done.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

_trim: Optional[Any] = None
_looked = False


def release() -> None:
    """Returns gdb's free heap memory to the kernel (glibc's malloc_trim(0)), where it can."""
    global _trim, _looked
    if not _looked:
        _looked = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim
            _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _trim = None
    if _trim is not None:
        _trim(0)
