"""The calls whose whole effect is known at their entry: traced with one stop instead of two.

A malloc served by the calling thread's tcache, a free into it (its bin has room) and
free(NULL) change nothing but that tcache, and what they do follows from the memory at their
first instruction.  paths.py runs glibc's own path for the version over that memory (the one
place for its rules: hooks aside, the tcache's index, count, safe-linking, alignment check,
double-free key): when the path ends in the tcache with no check failing, the result and the
tcache after the call are the path's, so trace.py needs no breakpoint at the call's return.
Anything else returns None and the call is read at its return as before: the path leaves the
tcache, aborts, crashes, needs the tcache made first (MAYBE_INIT_TCACHE), or takes a 2.42+
large tcache bin (sorted lists, which paths.py does not rewrite).  What the caller checks
first: glibc's version read, not guessed; no malloc hook set (up to 2.33); not glibc's debug
malloc calling.

gdb-free: trace.py gives the memory (a Reader over the stop's pages), the state it read at the
entry and the tcache's bytes.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

from .explain import State, TcacheState
from .memory import Reader
from .paths import Context, Outcome, try_free, try_malloc

CALLS = ("malloc", "free")  # the calls that may settle at their entry


def settle(reader: Reader, ctx: Context, name: str, args: List[int], before: State, tcache_raw: bytes,
           parse: Callable[[bytes], TcacheState]) -> Optional[Tuple[Optional[int], State]]:
    """(the call's return value, the state after it), or None: read it at its return.
    `parse` makes a TcacheState of the tcache's bytes (as trace.py parses them at a return)."""
    if name == "free" and args[0] == 0:
        return None, before  # __libc_free: "free(0) has no effect"
    t = before.tcache
    if t is None or ctx.tcache is None or name not in CALLS:
        return None
    written: Dict[int, int] = {}
    out: Outcome
    if name == "malloc":
        out = m = try_malloc(reader, ctx, args[0], written=written)
        result, index = m.user_address, m.bin_index if m.source == "tcache" else None
    else:
        out = f = try_free(reader, ctx, args[0], written=written)
        result, index = None, f.bin_index if f.to is not None and f.to.startswith("tcache") else None
    if index is None or index >= ctx.layout.features.tcache_small_bins or out.aborts is not None or \
            out.crashes is not None or out.gave_up:
        return None
    after = parse(_overlay(tcache_raw, t.address, written, reader))
    return result, State(before.arenas, before.n_mmaps, before.mmapped_mem, after, before.unsorted)


def _overlay(raw: bytes, address: int, written: Dict[int, int], reader: Reader) -> bytes:
    """raw (the bytes at address) with the path's writes laid over it."""
    S = reader.size_sz
    out = bytearray(raw)
    for at, value in written.items():
        off = at - address
        if 0 <= off <= len(out) - S:
            out[off:off + S] = value.to_bytes(S, reader.order)
    return bytes(out)
