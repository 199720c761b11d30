"""errors.py: one family of errors, and the unreadable-memory message word for word."""

from gdb_heap.errors import HeapError, MemoryReadError


def test_memory_read_error():
    e = MemoryReadError(0x7FFFF7DD0000, 16)
    assert isinstance(e, HeapError) and isinstance(e, Exception)
    assert str(e) == "cannot read 16 bytes at 0x7ffff7dd0000; the address is not mapped (or not in the core file)"
    assert (e.address, e.length) == (0x7FFFF7DD0000, 16)
