"""Why a malloc or free did what it did, read from the allocator's state around the call.

gdb-free: trace.py reads, at a call's entry and at its return, only what the call can change
(every arena's malloc_state: bin heads, fastbinsY, top, last_remainder, system_mem; mp_'s
mmapped counters; the calling thread's tcache counts and heads; the unsorted chains, bounded)
and hands both states here with the call.  What changed says where the chunk came from or went:
a chunk that was the head of the thread's tcache bin and is gone from it came from the tcache,
a freed chunk that is now the head of fast bin i went there, a freed chunk inside the chunk now
at the unsorted bin's head was merged with its neighbours, and so on.  This is what is
observable, so it holds for every glibc version without knowing its code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .layouts import NBINS, GlibcLayout, bin_kind
from .model import IS_MMAPPED, SIZE_BITS, MallocState, bin_at, bin_label, heap_initialised

# The calls traced, and which of their arguments are pointers (shown in hex) rather than sizes.
CALLS = ("malloc", "calloc", "realloc", "free", "memalign", "aligned_alloc", "posix_memalign", "valloc",
         "pvalloc", "malloc_trim")
POINTER_ARGS = {"free": (0,), "realloc": (0,), "posix_memalign": (0,)}
ARG_COUNTS = {"malloc": 1, "calloc": 2, "realloc": 2, "free": 1, "memalign": 2, "aligned_alloc": 2,
              "posix_memalign": 3, "valloc": 1, "pvalloc": 1, "malloc_trim": 1}
RETURNS_NOTHING = ("free",)
# The system calls a call may make: name -> (number of arguments, which are addresses).
SYSCALLS = {"brk": (1, (0,)), "mmap": (6, (0,)), "munmap": (2, (0,)), "mremap": (4, (0,)),
            "madvise": (3, (0,)), "mprotect": (3, (0,))}
MADV_DONTNEED = 4
MADV_FREE = 8
UNSORTED_READ = 64  # unsorted chunks read per arena and state, at most: the chain is short in practice


@dataclass
class TcacheState:
    address: int  # the thread's tcache_perthread_struct
    counts: Tuple[int, ...]  # chunks held per bin
    heads: Tuple[int, ...]  # each bin's first chunk (chunk address; 0: empty)


class Chain:
    """An arena's unsorted chunks in order from the bin's head (at most UNSORTED_READ), read
    only as far as they are asked for: at a call's return, while the program is stopped,
    explain() mostly needs the first one or two.  `fd(address)` reads a word (None: unreadable)."""

    def __init__(self, first: int, header: int, fd: Callable[[int], Optional[int]], size_sz: int) -> None:
        self._read: List[int] = []
        self._next: Optional[int] = first
        self._header, self._fd, self._S = header, fd, size_sz

    def _step(self) -> bool:
        p = self._next
        if p is None or p in (0, self._header) or len(self._read) >= UNSORTED_READ or p in self._read:
            self._next = None
            return False
        self._read.append(p)
        self._next = self._fd(p + 2 * self._S)
        return True

    def __iter__(self) -> Iterator[int]:
        i = 0
        while i < len(self._read) or self._step():
            yield self._read[i]
            i += 1

    def __contains__(self, chunk: object) -> bool:
        return any(p == chunk for p in self)

    def __getitem__(self, which: slice) -> Tuple[int, ...]:
        return tuple(islice(self, which.start, which.stop, which.step))


Unsorted = Union[Tuple[int, ...], Chain]


@dataclass
class State:
    """What a call can change, read at its entry or at its return."""

    arenas: Dict[int, MallocState]  # by address, main_arena first
    n_mmaps: int
    mmapped_mem: int
    tcache: Optional[TcacheState]
    unsorted: Dict[int, Unsorted] = field(default_factory=dict)  # arena -> its unsorted chunks, in order

    def system_mem(self) -> int:
        return sum(a.system_mem for a in self.arenas.values())


@dataclass
class Syscall:
    name: str
    args: List[int]
    result: Optional[int] = None


@dataclass
class Call:
    """One call as the trace saw it: its arguments, its result and the chunk headers it read."""

    name: str
    args: List[int]
    result: Optional[int]
    pointer: Optional[int]  # the memory it returned (posix_memalign: what it stored in *memptr)
    size_field_before: Optional[int] = None  # free/realloc: the freed chunk's size field at entry
    syscalls: List[Syscall] = field(default_factory=list)


@dataclass
class Why:
    chunk: Optional[int] = None
    size: Optional[int] = None
    from_: Optional[str] = None
    to: Optional[str] = None
    bin_index: Optional[int] = None
    merged_with: List[int] = field(default_factory=list)
    trimmed: int = 0
    text: str = ""  # the explanation in words


SizeAt = Callable[[int], Optional[int]]  # the size field at a chunk address, read at the return


def _bin_heads(layout: GlibcLayout, state: MallocState) -> Dict[int, Tuple[int, int]]:
    """bin index -> (fd, bk) of its non-empty regular bins."""
    out = {}
    for i in range(1, NBINS - 1):
        fd, bk = state.bins[2 * (i - 1)], state.bins[2 * (i - 1) + 1]
        if fd not in (0, bin_at(layout, state.address, i)):
            out[i] = (fd, bk)
    return out


def _trimmed(before: State, after: State, syscalls: Sequence[Syscall]) -> int:
    """Bytes given back to the kernel: arenas' system memory and mmapped memory that went away,
    and pages madvise(MADV_DONTNEED) released."""
    gone = sum(max(0, b.system_mem - after.arenas[a].system_mem) for a, b in before.arenas.items()
               if a in after.arenas)
    gone += max(0, before.mmapped_mem - after.mmapped_mem)
    gone += sum(s.args[1] for s in syscalls if s.name == "madvise" and len(s.args) > 2 and s.result == 0
                and s.args[2] in (MADV_DONTNEED, MADV_FREE))
    return gone


def _grew(before: State, after: State, arena: int, syscalls: Sequence[Syscall]) -> bool:
    return (arena in before.arenas and after.arenas[arena].system_mem > before.arenas[arena].system_mem) or \
        any(s.name in ("brk", "mprotect") for s in syscalls)


def _head(layout: GlibcLayout, state: State, chunk: int, size: int) -> Optional[Tuple[str, int]]:
    """("tcache", i) or ("fast", i) when the chunk heads the thread's tcache bin or a fast bin
    of its size in `state`."""
    t = state.tcache
    i = layout.tcache_index(size)
    if t is not None and i < len(t.heads) and t.heads[i] == chunk:
        return "tcache", i
    f = layout.fastbin_index(size)
    for one in state.arenas.values():
        if 0 <= f < len(one.fastbinsY) and one.fastbinsY[f] == chunk:
            return "fast", f
    return None


def came_from(layout: GlibcLayout, before: State, after: State, chunk: int, size_field: int,
              size_at: SizeAt, syscalls: Sequence[Syscall]) -> Why:
    """Where an allocated chunk was before the call."""
    size = size_field & ~SIZE_BITS
    why = Why(chunk, size)
    if size_field & IS_MMAPPED:
        why.from_, why.text = "mmap", "a mapping of its own (mmap: the request is at or above the mmap threshold)"
        return why
    head = _head(layout, before, chunk, size)
    if head is not None:
        why.from_, why.bin_index = head
        why.text = f"taken from the head of {bin_label(*head)}" + (
            f" (the thread's cache of {size:#x}-byte chunks)" if head[0] == "tcache" else "")
        return why
    remainder = _remainder(layout, after, chunk + size, size_at)
    consolidated = _consolidated(before, after)
    for address, state in before.arenas.items():
        made = not heap_initialised(layout, state)
        back = consolidated and address in after.arenas and after.arenas[address].top == chunk + size
        if chunk == state.top or made or back:
            why.from_ = "top"
            grown = _grew(before, after, address, syscalls)
            why.text = "cut from top" + (" after making the heap" if made else " after growing the heap"
                                         if grown else "")
            if back and chunk != state.top:
                why.text += " (fast bins consolidated first: the chunks next to top merged into it)"
            return why
        if chunk == state.last_remainder:
            why.from_ = "last_remainder"
            why.text = "cut from the last remainder (the rest of the last split chunk)" + remainder
            return why
        if chunk in before.unsorted.get(address, ()):
            why.from_, why.bin_index = "unsorted", 1
            why.text = "taken from the unsorted bin" + (", split" + remainder if remainder else " (an exact fit)")
            return why
        for i, (fd, bk) in _bin_heads(layout, state).items():
            if chunk in (fd, bk) and i > 1:
                why.from_, why.bin_index = bin_kind(i), i
                why.text = f"taken from {bin_label(bin_kind(i), i)}" + (", split" + remainder if remainder else "")
                return why
    for address in after.arenas:
        if address not in before.arenas:
            why.from_ = "top"
            why.text = "cut from the top of a new arena (a heap mmapped for this thread)"
            return why
    # Inside a bin's chain, read only at its heads: the bin of the chunk before any split.
    whole = size + (_size(size_at, chunk + size) if remainder else 0)
    i = layout.bin_index(whole)
    why.from_, why.bin_index = bin_kind(i), i
    why.text = f"taken from {bin_label(bin_kind(i), i)} (a {whole:#x}-byte chunk inside its chain)" + (
        ", split" + remainder if remainder else "")
    return why


def _consolidated(before: State, after: State) -> bool:
    """malloc_consolidate ran: fast bins that held chunks are all empty now."""
    return any(any(b.fastbinsY) and not any(after.arenas[a].fastbinsY)
               for a, b in before.arenas.items() if a in after.arenas)


def _size(size_at: SizeAt, chunk: int) -> int:
    got = size_at(chunk)
    return (got or 0) & ~SIZE_BITS


def _remainder(layout: GlibcLayout, after: State, at: int, size_at: SizeAt) -> str:
    """", remainder 0x... left in the unsorted bin" when the call split a chunk there."""
    for address, state in after.arenas.items():
        if at == state.last_remainder or at in after.unsorted.get(address, ())[:1]:
            return f"; the remainder {at:#x} ({_size(size_at, at):#x} bytes) left in the unsorted bin" + (
                " as last_remainder" if at == state.last_remainder else "")
    return ""


def went_to(layout: GlibcLayout, before: State, after: State, chunk: int, size_field: int,
            size_at: SizeAt) -> Why:
    """Where a freed chunk went."""
    size = size_field & ~SIZE_BITS
    why = Why(chunk, size)
    if size_field & IS_MMAPPED:
        why.to, why.text = "munmap", "unmapped (an mmapped chunk is given back to the kernel whole)"
        return why
    t = after.tcache
    full = ""
    if t is not None and layout.tcache_index(size) < len(t.counts):
        i = layout.tcache_index(size)
        full = f" ({bin_label('tcache', i)} is full: {t.counts[i]})" if t.counts[i] else ""
    head = _head(layout, after, chunk, size)
    if head is not None:
        why.to, why.bin_index = head
        why.text = f"into {bin_label(*head)}" + (f", now holding {t.counts[head[1]]}" if t is not None and
                                                 head[0] == "tcache" else full)
        return why
    tail = "; fast bins consolidated" if _consolidated(before, after) else ""
    for address, state in after.arenas.items():
        top_size = _size(size_at, state.top)
        if state.top <= chunk < state.top + top_size:
            old = before.arenas.get(address)
            why.merged_with = ([state.top] if state.top < chunk else []) + (
                [old.top] if old is not None and old.top == chunk + size else [])
            why.to = "top"
            why.text = "merged into top" + (f" (which started at {old.top:#x})" if old is not None and
                                            old.top == chunk + size else "") + (
                f", merged with the free chunk before it at {state.top:#x}" if state.top < chunk else "") + full + tail
            return why
        for held in after.unsorted.get(address, ()):
            held_size = _size(size_at, held)
            if held <= chunk < held + held_size:
                why.to, why.bin_index = "unsorted", 1
                why.merged_with = ([held] if held < chunk else []) + (
                    [chunk + size] if held + held_size > chunk + size else [])
                why.text = "into the unsorted bin" + _merged(why.merged_with) + full + tail
                return why
    why.text = "not in any bin head the trace reads" + tail
    return why


def _merged(with_: Sequence[int]) -> str:
    return f", merged with {', '.join(f'{c:#x}' for c in with_)}" if with_ else ""


def explain(layout: GlibcLayout, before: State, after: State, call: Call, size_at: SizeAt) -> Why:
    """The record's chunk, size, from/to, bin index, merges, bytes trimmed and words."""
    H = layout.header_size
    name, args = call.name, call.args
    freed = args[0] if name == "free" or (name == "realloc" and args[0] and not args[1]) else 0
    if name == "malloc_trim":
        why = Why(text="trimmed the arenas")
    elif freed:
        if call.size_field_before is None:
            why = Why(freed - H, text="the chunk's header was not readable")
        else:
            why = went_to(layout, before, after, freed - H, call.size_field_before, size_at)
    elif call.pointer:
        chunk = call.pointer - H
        size_field = size_at(chunk)
        if size_field is None:
            why = Why(chunk, text="the chunk's header is not readable")
        elif name == "realloc" and args[0]:
            why = _realloc(layout, before, after, call, chunk, size_field, size_at)
        else:
            why = came_from(layout, before, after, chunk, size_field, size_at, call.syscalls)
    elif name == "free" or (name == "realloc" and not args[0] and not call.pointer):
        why = Why(text="nothing to free (a null pointer)" if name == "free" else "failed")
    else:
        why = Why(text="failed: no memory returned")
    why.trimmed = _trimmed(before, after, call.syscalls)
    if why.trimmed and name != "malloc_trim":
        why.text += f"; {why.trimmed:#x} bytes given back to the kernel"
    elif name == "malloc_trim":
        why.text = f"gave {why.trimmed:#x} bytes back to the kernel" if why.trimmed else "nothing to give back"
    return why


def _realloc(layout: GlibcLayout, before: State, after: State, call: Call, chunk: int, size_field: int,
             size_at: SizeAt) -> Why:
    old = call.args[0] - layout.header_size
    old_size = (call.size_field_before or 0) & ~SIZE_BITS
    size = size_field & ~SIZE_BITS
    if chunk == old:
        why = Why(chunk, size)
        if size_field & IS_MMAPPED:
            why.from_, why.text = "mmap", f"in place (its mapping resized: {old_size:#x} -> {size:#x})"
        elif size > old_size:
            nxt = old + old_size
            was_top = any(s.top == nxt for s in before.arenas.values())
            why.from_ = "top" if was_top else None
            why.text = f"in place, grown into the next chunk {nxt:#x}" + (" (top)" if was_top else "") + \
                f": {old_size:#x} -> {size:#x}"
        else:
            why.text = f"in place ({old_size:#x} -> {size:#x})" + (
                f"; the rest {chunk + size:#x} freed" if size < old_size else "")
        return why
    why = came_from(layout, before, after, chunk, size_field, size_at, call.syscalls)
    if call.size_field_before is not None:
        gone = went_to(layout, before, after, old, call.size_field_before, size_at)
        why.to, why.merged_with = gone.to, gone.merged_with
        why.text = f"moved from {old:#x}: new chunk {why.text}; the old one to {gone.text}"
    return why


@dataclass
class Record:
    """One traced call, as `heap trace --json` shows it."""

    seq: int
    thread: int
    lwp: int
    call: Call
    caller: Optional[str]
    why: Why

    def doc(self) -> Dict[str, object]:
        w = self.why
        return {"seq": self.seq, "thread": self.thread, "lwp": self.lwp, "call": self.call.name,
                "args": list(self.call.args), "result": self.call.result, "caller": self.caller,
                "chunk": w.chunk, "size": w.size, "from": w.from_, "to": w.to, "bin_index": w.bin_index,
                "merged_with": list(w.merged_with), "trimmed": w.trimmed,
                "syscalls": [{"name": s.name, "args": list(s.args), "result": s.result} for s in self.call.syscalls],
                "why": w.text}


def call_text(call: Call) -> str:
    """malloc(24) = 0x55555555a2a0"""
    pointers = POINTER_ARGS.get(call.name, ())
    args = ", ".join(f"{a:#x}" if i in pointers else str(a) for i, a in enumerate(call.args))
    text = f"{call.name}({args})"
    if call.name in RETURNS_NOTHING:
        return text
    if call.result is None:
        return text + " = ?"
    if call.name in ("posix_memalign", "malloc_trim"):
        return text + f" = {call.result}" + (f" (*memptr = {call.pointer:#x})" if call.pointer else "")
    return text + f" = {call.result:#x}"


def syscall_text(s: Syscall) -> str:
    addresses = SYSCALLS.get(s.name, (0, ()))[1]
    args = ", ".join(f"{a:#x}" if i in addresses or a > 0xffff else str(a) for i, a in enumerate(s.args))
    return f"{s.name}({args}) = " + ("?" if s.result is None else f"{s.result:#x}" if s.result > 0xffff
                                     else str(s.result))


def record_lines(r: Record) -> List[str]:
    w = r.why
    head = f"{r.seq:>5}  thread {r.thread} (LWP {r.lwp})  {call_text(r.call)}"
    if r.caller:
        head += f"  from {r.caller}"
    lines = [head]
    if w.chunk is not None:
        size = f" size {w.size:#x}" if w.size is not None else ""
        lines.append(f"       chunk {w.chunk:#x}{size}: {w.text}")
    elif w.text:
        lines.append(f"       {w.text}")
    for s in r.call.syscalls:
        lines.append(f"       syscall {syscall_text(s)}")
    return lines
