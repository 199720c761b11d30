"""gdb_heap: glibc malloc's heap, as gdb commands (`source gdb_heap/init.py`)."""

__version__ = "0.1.0"
