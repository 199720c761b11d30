"""The gdb side of `heap trace`: breakpoints on the allocator's entry points and their returns.

Every traced function (explain.CALLS) and every system call wrapper malloc uses (brk, mmap,
munmap, mremap, madvise, mprotect) gets an internal breakpoint at its first instruction, at the
address libc's own ELF symbols give (so without debug symbols too, and never ld.so's copies).
Its stop() reads the arguments (x86-64: registers; i386: the stack), the return address and
the allocator's state, then returns False: the program runs on.  The return is caught by a
breakpoint at the return address, shared by every call returning there, enabled while a call
waits for it and kept until `heap trace stop`; it completes the call only for the thread that
made it, at the stack depth it was made from, so a jump to that address from elsewhere is
ignored.  A call whose whole effect is known at its entry (settled.py: a malloc the tcache
serves, a free into the tcache, free(NULL)) is recorded there: one stop instead of two.  A call made while one is in
progress in the same thread (realloc's malloc, posix_memalign's memalign...) belongs to the
outer call.  Nothing is written to the inferior and nothing is called in it.
"""

from __future__ import annotations

import collections
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Tuple, TypeVar, cast

import gdb  # type: ignore[import-not-found,unused-ignore]

from . import elf, heuristics, mappings, model, settled
from .errors import HeapError, MemoryReadError
from .explain import (ARG_COUNTS, CALLS, SYSCALLS, Call, Chain, Record, State, Syscall, TcacheState, Unsorted,
                      explain)
from .gdbmemory import GdbMemory
from .layouts import GlibcLayout
from .locate import is_core, is_debug_malloc, locate, process_mappings, require_process, symbol_at, word_size
from .memory import PAGE, Bytes, Reader
from .paths import Context

DEFAULT_RING = 10_000
MAX_RETURN_SITES = 1 << 14  # distinct return addresses given a breakpoint, at most
CALLER_FRAMES = 32  # frames unwound looking for the first one outside libc
# Other names of the same functions, tried when a libc lacks the first (internal aliases).
ALIASES = {"brk": ("__brk",), "mmap": ("__mmap", "mmap64"), "munmap": ("__munmap",), "mremap": ("__mremap",),
           "madvise": ("__madvise",), "mprotect": ("__mprotect",), "malloc": ("__libc_malloc",),
           "free": ("__libc_free",)}
# Calls that return an int (the rest return a pointer); the syscall wrappers returning an int.
INT_RESULTS = ("posix_memalign", "malloc_trim", "brk", "munmap", "madvise", "mprotect")
ARG_REGISTERS = ("$rdi", "$rsi", "$rdx", "$rcx", "$r8", "$r9")
MAX_JOINT_READ = 1 << 14  # main_arena and mp_ closer than this are read in one go
HOOKS = {"malloc": "__malloc_hook", "free": "__free_hook"}  # called instead, when set (until 2.33)
T = TypeVar("T")


@dataclass
class Pending:
    """A call in progress in one thread."""

    name: str
    args: List[int]
    ret: int  # the return address
    sp: int  # the stack pointer at entry (pointing at the return address)
    before: State
    caller: Optional[str]
    size_field_before: Optional[int]
    syscalls: List[Syscall] = field(default_factory=list)
    inner: Optional[Tuple[Syscall, int, int]] = None  # a system call in progress: (it, ret, sp)


class _Entry(gdb.Breakpoint):  # type: ignore[misc,unused-ignore]
    def __init__(self, tracer: Tracer, address: int, name: str, syscall: bool) -> None:
        super().__init__(f"*{address:#x}", internal=True)
        self.silent = True
        self.tracer, self.call_name, self.syscall = tracer, name, syscall

    def stop(self) -> bool:
        self.tracer.guard(self.tracer.syscall_entry if self.syscall else self.tracer.entry, self.call_name)
        return False


class _Return(gdb.Breakpoint):  # type: ignore[misc,unused-ignore]
    def __init__(self, tracer: Tracer, address: int) -> None:
        super().__init__(f"*{address:#x}", internal=True)
        self.silent = True
        self.tracer, self.address = tracer, address

    def stop(self) -> bool:
        self.tracer.guard(self.tracer.returned, self.address)
        return False


class _StopPages:
    """Memory as the tracer reads it in one stop (by page), for paths.py's Reader."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def read(self, address: int, length: int) -> Bytes:
        page = address & ~(PAGE - 1)
        data = self.tracer.page(page) if address + length <= page + PAGE else None
        if data is None:
            return self.tracer.memory.read(address, length)
        return data[address - page:address - page + length]

    def missing(self, address: int) -> bool:
        return False


class Log:
    """The records, kept across start and stop: a ring of the last N, and how many were dropped."""

    def __init__(self) -> None:
        self.records: Deque[Record] = collections.deque(maxlen=DEFAULT_RING)
        self.dropped = 0
        self.seq = 0
        self.errors: List[str] = []  # why calls could not be read (the first few)
        self.error_count = 0

    def resize(self, ring: int) -> None:
        self.records = collections.deque(self.records, maxlen=ring)

    def add(self, record: Record) -> None:
        if len(self.records) == self.records.maxlen:
            self.dropped += 1
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()
        self.dropped = self.error_count = 0
        self.errors = []


LOG = Log()
_tracer: Optional[Tracer] = None


def tracing() -> bool:
    return _tracer is not None


class Tracer:
    def __init__(self) -> None:
        require_process()
        if is_core():
            raise HeapError("a core file does not run; heap trace needs a live process (run, start)")
        maps, _ = process_mappings()
        found = locate(Reader(GdbMemory(), word_size()), maps)
        # Its own reader, that never caches: memory changes between every two reads.
        self.memory = GdbMemory()
        self.reader = Reader(self.memory, word_size(), cache=False)
        state = found.state
        self.layout: GlibcLayout = state.layout
        self.main_arena, self.mp = state.main_arena, state.mp
        self.S = self.layout.size_sz
        self._tls()
        libc = mappings.libc_path(maps)  # as the process maps it
        # glibc's code: libc and the dynamic loader (whose calloc is libc's, called by pthread_create)
        self.glibc = [s for s in (_span(maps, libc), _span(maps, _loader(maps))) if s is not None]
        self.inferior = gdb.selected_inferior()
        self.mask = (1 << (8 * self.S)) - 1
        self._word = struct.Struct(("<" if self.reader.order == "little" else ">") + ("Q" if self.S == 8 else "I"))
        self.pages: Dict[int, Optional[bytes]] = {}  # this stop's memory, by page
        self.parsed: Dict[Tuple[str, int], Tuple[Bytes, int, object]] = {}  # the last parse of each struct
        self.thread_pointers: Dict[int, int] = {}  # thread (global number) -> $fs_base
        self.pending: Dict[int, Pending] = {}
        self.callers: Dict[int, Optional[str]] = {}  # return address outside libc -> caller
        self.returns: Dict[int, _Return] = {}
        self.mp_now: Optional[model.MallocPar] = None  # mp_ as the last state() read it
        self.tcache_raw = b""  # the thread's tcache's bytes as the last state() read them
        self.waiting: Dict[int, int] = {}  # return address -> calls (and system calls) waiting for it
        self.entries: List[_Entry] = []
        self.settled = 0  # calls recorded at their entry (one stop)
        # Settling runs glibc's own path for the version: only when the version is known, not
        # guessed from the memory's layout (a static program without glibc's banner).
        self.one_stop = ONE_STOP and state.version is not None
        self.stop_reader = Reader(_StopPages(self), self.S, self.reader.order == "little", cache=False)
        self.key_at = state.tcache_key  # 2.34+: glibc's tcache_key, by its symbol
        spans = state.data_spans
        self.hooks = {name: _in_spans(_address_of(hook), spans) for name, hook in HOOKS.items()} \
            if self.layout.features.malloc_hooks else {}
        # glibc's debug malloc (2.34+) calls libc's malloc with its own request: read at the return
        self.debug_malloc = [s for s in (_span(maps, m.path) for m in maps if m.path and is_debug_malloc(m.path))
                             if s is not None]
        addresses = _addresses(maps, libc)
        missing = [c for c in ("malloc", "free") if c not in addresses]
        if missing:
            raise HeapError(f"cannot find {' and '.join(missing)} in the C library's symbols; heap trace needs "
                            "glibc's exported functions (a stripped static program has none)")
        placed: Dict[int, str] = {}
        for name in CALLS + tuple(SYSCALLS):  # aliases at one address (aligned_alloc = memalign): the first name
            address = addresses.get(name)
            if address is not None and address not in placed:
                placed[address] = name
                self.entries.append(_Entry(self, address, name, name in SYSCALLS))
        gdb.events.exited.connect(self._exited)

    # -- reading ----------------------------------------------------------------------------
    # A handler runs while the program is stopped: memory is read by page once per stop
    # (`pages`, emptied by guard()), a struct whose bytes did not change since the last stop
    # is not parsed again (`parsed`), and registers are read through gdb's `$reg` values: a
    # gdb.Frame costs more (gdb unwinds the caller's frame to make one).
    def page(self, page: int) -> Optional[bytes]:
        """This stop's bytes of a page (None: unreadable as a whole)."""
        if page in self.pages:
            return self.pages[page]
        try:
            data: Optional[bytes] = bytes(self.memory.read(page, PAGE))
        except MemoryReadError:
            data = None
        self.pages[page] = data
        return data

    def word(self, address: int) -> int:
        page = address & ~(PAGE - 1)
        data = self.page(page)  # None: read just the word, below
        off = address - page
        if data is None or off + self.S > PAGE:
            return int.from_bytes(self.reader.read(address, self.S), self.reader.order)
        return int(self._word.unpack_from(data, off)[0])

    def register(self, name: str) -> int:
        return int(gdb.parse_and_eval(name)) & self.mask

    def args(self, sp: int, count: int) -> List[int]:
        if self.S == 8:
            return [self.register(r) for r in ARG_REGISTERS[:count]]
        return [self.word(sp + self.S * (1 + i)) for i in range(count)]  # cdecl: above the return address

    def sp(self) -> int:
        return self.register("$rsp" if self.S == 8 else "$esp")

    def result(self, name: str) -> int:
        value = self.register("$rax" if self.S == 8 else "$eax")
        return _signed32(value) if name in INT_RESULTS else value

    def thread_pointer(self, thread: int) -> int:
        """$fs_base, the same for a thread's whole life: read once per thread."""
        tp = self.thread_pointers.get(thread)
        if tp is None:
            tp = self.thread_pointers[thread] = self.register("$fs_base")
        return tp

    def size_at(self, chunk: int) -> Optional[int]:
        try:
            return self.word(chunk + self.S)
        except MemoryReadError:
            return None

    def _tls(self) -> None:
        """How to find a thread's tcache inside a breakpoint's handler, where gdb must run no
        command: x86-64, the distance from the thread pointer to libc's `tcache` slot (the same
        in every thread: static TLS), from debug symbols now or found later in memory; else
        gdb's TLS support (debug symbols)."""
        self.tls_delta: Optional[int] = None
        self.tls_symbol = False
        if not self.layout.features.tcache:
            return
        try:
            slot = int(gdb.parse_and_eval("(unsigned long)&tcache"))
            self.tls_symbol = True
            if self.S == 8:
                self.tls_delta = int(gdb.parse_and_eval("(unsigned long)$fs_base")) - slot
        except gdb.error:
            pass

    def _find_tls_delta(self, tp: int, arenas: Dict[int, model.MallocState], mp: model.MallocPar) -> None:
        """Without symbols: locate.py's heuristic (thread_arena's slot holds an arena, tcache
        is the word near it pointing at a tcache-sized chunk), by memory reads only."""
        if not tp:
            return
        arena_slot = None
        # The TLS area's mapping is not known here (gdb runs no command in a handler): windows
        # that shrink to the thread pointer's own page until one is readable and holds it.
        for window in (heuristics.TLS_WINDOW, 4 * PAGE + (tp & (PAGE - 1)), PAGE + (tp & (PAGE - 1)),
                       tp & (PAGE - 1)):
            _, arena_slot = heuristics.tls_arena(self.reader, tp, tp - window, list(arenas))
            if arena_slot is not None:
                break
        if arena_slot is None:
            return
        heaps = [(mp.sbrk_base, mp.sbrk_base + arenas[self.main_arena].system_mem)] + [
            (model.heap_for_ptr(self.layout, a.top), model.heap_for_ptr(self.layout, a.top) + self.layout.heap_max_size)
            for address, a in arenas.items() if address != self.main_arena]
        value = heuristics.tls_tcache(self.reader, self.layout, arena_slot, heaps)
        for slot in range(arena_slot - heuristics.TLS_NEIGHBOURS, arena_slot + heuristics.TLS_NEIGHBOURS, self.S):
            if value is not None and self.word(slot) == value:
                self.tls_delta = tp - slot
                return

    def tcache_of(self, thread: int, arenas: Dict[int, model.MallocState], mp: model.MallocPar) -> Optional[int]:
        if not self.layout.features.tcache:
            return None
        if self.tls_delta is None and self.S == 8 and not self.tls_symbol:
            self._find_tls_delta(self.thread_pointer(thread), arenas, mp)
        if self.tls_delta is not None:
            return self.word(self.thread_pointer(thread) - self.tls_delta) or None
        if self.tls_symbol:
            return int(gdb.parse_and_eval("(unsigned long)tcache")) or None
        return None

    def _parsed(self, kind: str, address: int, raw: Bytes, parse: Callable[[Bytes], T], extra: int = 0) -> T:
        """parse(raw), or what it gave for the same bytes (and extra) at the same address last time."""
        key = (kind, address)
        hit = self.parsed.get(key)
        if hit is not None and hit[0] == raw and hit[1] == extra:
            return cast(T, hit[2])
        value = parse(raw)
        self.parsed[key] = (raw, extra, value)
        return value

    def _main_and_mp(self) -> Tuple[Bytes, Bytes]:
        """main_arena's and mp_'s bytes: one read when they lie close (both in libc's data)."""
        a, a_size = self.main_arena, self.layout.malloc_state.size
        m, m_size = self.mp, self.layout.malloc_par.size
        low, high = min(a, m), max(a + a_size, m + m_size)
        if high - low > MAX_JOINT_READ:
            return bytes(self.memory.read(a, a_size)), bytes(self.memory.read(m, m_size))
        raw = bytes(self.memory.read(low, high - low))
        return raw[a - low:a - low + a_size], raw[m - low:m - low + m_size]

    def state(self, thread: int, unsorted: str) -> State:
        """The allocator's state that a call can change: every arena, mp_'s counters, the tcache;
        the unsorted chunks "all" read now, "lazy" read as explain() asks (in this stop), or
        "none" (what a free's or malloc_trim's state before the call needs: explain() reads
        only the after state's)."""
        layout = self.layout
        main_raw, mp_raw = self._main_and_mp()
        order = self.reader.order
        arenas: Dict[int, model.MallocState] = {}
        address, raw = self.main_arena, main_raw

        def arena(b: Bytes) -> model.MallocState:
            return model.malloc_state_from(model.StructBytes(None, layout.malloc_state, address, b, order), address)

        for _ in range(model.MAX_ARENAS):
            arenas[address] = one = self._parsed("arena", address, raw, arena)
            address = one.next
            if not address or address in arenas:
                break
            raw = bytes(self.memory.read(address, layout.malloc_state.size))
        mp = self._parsed("mp", self.mp, mp_raw, lambda b: model.malloc_par_from(
            model.StructBytes(None, layout.malloc_par, self.mp, b, order), self.mp))
        chains: Dict[int, Unsorted] = {}
        if unsorted != "none":
            for a, s in arenas.items():
                header = model.bin_at(layout, a, 1)
                if s.bins[0] in (0, header):
                    chains[a] = ()  # empty
                    continue
                chain = Chain(s.bins[0], header, self._fd, self.S)
                chains[a] = chain if unsorted == "lazy" else tuple(chain)
        tcache = self.tcache_of(thread, arenas, mp)
        self.mp_now = mp
        return State(arenas, mp.n_mmaps, mp.mmapped_mem, self._tcache(tcache, mp) if tcache else None, chains)

    def _fd(self, address: int) -> Optional[int]:
        try:
            return self.word(address)
        except MemoryReadError:
            return None

    def _tcache(self, address: int, mp: model.MallocPar) -> Optional[TcacheState]:
        try:
            raw = self.tcache_raw = bytes(self.memory.read(address, self.layout.tcache_perthread.size))
        except MemoryReadError:
            return None
        return self._parsed("tcache", address, raw, lambda b: self._parse_tcache(address, b, mp), mp.tcache_count)

    def _parse_tcache(self, address: int, raw: Bytes, mp: model.MallocPar) -> TcacheState:
        t, layout = self.layout.tcache_perthread, self.layout
        c_off, c_size, _ = t.fields[layout.counts_field]
        n = layout.tcache_bins
        end = "<" if self.reader.order == "little" else ">"
        counts = list(struct.unpack_from(f"{end}{n}{'H' if c_size == 2 else 'B'}", raw, c_off))
        if layout.features.tcache_free_slots:  # 2.42: the counts are free slots
            counts = [mp.tcache_count - c if c <= mp.tcache_count else 0 for c in counts]
        e_off, H = t.offset("entries"), layout.header_size
        heads = struct.unpack_from(f"{end}{n}{'Q' if self.S == 8 else 'I'}", raw, e_off)
        return TcacheState(address, tuple(counts), tuple(h - H if h else 0 for h in heads))

    def in_libc(self, pc: int) -> bool:
        return any(low <= pc < high for low, high in self.glibc)

    def caller(self, ret: int) -> Optional[str]:
        """The first frame outside libc: "function at file:line"."""
        if ret in self.callers:
            return self.callers[ret]
        if not self.in_libc(ret):
            self.callers[ret] = _describe(ret)
            return self.callers[ret]
        frame: Optional[gdb.Frame] = gdb.newest_frame()
        for _ in range(CALLER_FRAMES):
            if frame is None:
                return None
            if not self.in_libc(frame.pc()):
                return _describe(frame.pc())
            frame = frame.older()
        return None

    # -- events ----------------------------------------------------------------------------
    def guard(self, handler: object, what: object) -> None:
        """Runs a breakpoint's handler; an error is counted and said, never raised into gdb
        (that would stop the program)."""
        self.pages.clear()  # the program ran since the last stop
        try:
            handler(what)  # type: ignore[operator]
        except Exception as e:  # a failed read must not stop the program
            LOG.error_count += 1
            if len(LOG.errors) < 3:
                LOG.errors.append(f"{type(e).__name__}: {e}")

    def entry(self, name: str) -> None:
        thread = gdb.selected_thread()
        if thread.global_num in self.pending:
            return  # inside a traced call: part of it
        sp = self.sp()
        ret = self.word(sp)
        args = self.args(sp, ARG_COUNTS[name])
        freed = args[0] if name in ("free", "realloc") else 0
        size_field = self.size_at(freed - self.layout.header_size) if freed else None
        if name in settled.CALLS and self.one_stop:
            before = self.state(thread.global_num, "lazy")
            done = self.settle(name, args, ret, before)
            if done is not None:
                self.settled += 1
                self.record(thread, Pending(name, args, ret, sp, before, self.caller(ret), size_field), done[0],
                            done[1])
                return
            # The unsorted chains as they are now (the program runs before the return); a free's
            # explanation reads only those after it.
            before.unsorted = {} if name == "free" else {a: tuple(c) for a, c in before.unsorted.items()}
        else:
            before = self.state(thread.global_num, "none" if name in ("free", "malloc_trim") else "all")
        self.pending[thread.global_num] = Pending(name, args, ret, sp, before, self.caller(ret),
                                                  size_field)
        self.watch_return(ret)

    def settle(self, name: str, args: List[int], ret: int, before: State) -> Optional[Tuple[int, State]]:
        """(the return value, the state after the call) when its whole effect is known now."""
        t, mp = before.tcache, self.mp_now
        if t is None or mp is None or any(low <= ret < high for low, high in self.debug_malloc):
            return None
        try:
            if name in self.hooks:
                hook = self.hooks[name]
                if hook is None or self.word(hook):
                    return None  # unknown or set: glibc calls the hook instead
            key: Optional[int] = None
            if self.layout.features.tcache_key_random and name == "free" and args[0]:
                # Unknown key: the chunk's own key word, which makes the path walk the tcache for a
                # double free, as glibc would if it matched; the put after the walk is the same.
                key = self.word(self.key_at) if self.key_at is not None else self.word(args[0] + self.S)
        except MemoryReadError:
            return None
        ctx = Context(self.layout, self.main_arena, mp, t.address, key, tcache_only=True)
        done = settled.settle(self.stop_reader, ctx, name, args, before, self.tcache_raw,
                              lambda raw: self._parse_tcache(t.address, raw, mp))
        return None if done is None else (done[0] or 0, done[1])

    def syscall_entry(self, name: str) -> None:
        p = self.pending.get(gdb.selected_thread().global_num)
        if p is None or p.inner is not None:
            return  # not made by a traced call
        sp = self.sp()
        ret = self.word(sp)
        args = self.args(sp, SYSCALLS[name][0])
        if name == "mmap":  # its fd is an int: -1 for anonymous memory
            args[4] = _signed32(args[4])
        call = Syscall(name, args)
        p.inner = (call, ret, sp)
        p.syscalls.append(call)
        self.watch_return(ret)

    def watch_return(self, ret: int) -> None:
        """A breakpoint at ret, enabled while a call waits for it: a site whose calls mostly
        settle at their entry costs no stop at its return."""
        bp = self.returns.get(ret)
        if bp is None and len(self.returns) < MAX_RETURN_SITES:
            bp = self.returns[ret] = _Return(self, ret)
        if bp is None:
            return
        self.waiting[ret] = self.waiting.get(ret, 0) + 1
        if not bp.enabled:
            bp.enabled = True

    def unwatch(self, ret: int) -> None:
        left = self.waiting.get(ret, 0) - 1
        if left > 0:
            self.waiting[ret] = left
            return
        self.waiting.pop(ret, None)
        bp = self.returns.get(ret)
        if bp is not None and bp.enabled:
            bp.enabled = False

    def returned(self, pc: int) -> None:
        thread = gdb.selected_thread()
        p = self.pending.get(thread.global_num)
        if p is None:
            return
        sp = self.sp()
        if p.inner is not None and p.inner[1] == pc and sp == p.inner[2] + self.S:
            p.inner[0].result = self.result(p.inner[0].name)
            p.inner = None  # and when the call tail-called the wrapper (2.31's free: munmap), it returns too
            self.unwatch(pc)
        if p.ret != pc or sp != p.sp + self.S:
            return  # not this call's return (a jump here, or a deeper recursion)
        del self.pending[thread.global_num]
        self.unwatch(pc)
        result = self.result(p.name) if p.name != "free" else 0  # free returns nothing
        self.record(thread, p, result, self.state(thread.global_num, "lazy"))

    def record(self, thread: gdb.InferiorThread, p: Pending, result: int, after: State) -> None:
        """The call's record: p as read at its entry, its return value and the state after it."""
        if p.name == "free":
            pointer, shown = None, None
        elif p.name == "posix_memalign":
            pointer, shown = (self.word(p.args[0]) if result == 0 else None), result
        elif p.name == "malloc_trim":
            pointer, shown = None, result
        else:
            pointer, shown = result, result
        call = Call(p.name, p.args, shown, pointer, p.size_field_before, p.syscalls)
        why = explain(self.layout, p.before, after, call, self.size_at)
        LOG.seq += 1
        LOG.add(Record(LOG.seq, thread.num, thread.ptid[1] or thread.inferior.pid, call, p.caller, why))

    def _exited(self, _: object) -> None:
        stop()

    def remove(self) -> None:
        gdb.events.exited.disconnect(self._exited)
        for bp in self.entries + list(self.returns.values()):
            if bp.is_valid():
                bp.delete()
        self.entries, self.returns, self.pending = [], {}, {}


ONE_STOP = True  # settle the calls settled.py knows at their entry (False: two stops for every call)


def _address_of(name: str) -> Optional[int]:
    try:
        return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))
    except gdb.error:
        return None


def _in_spans(address: Optional[int], spans: List[Tuple[int, int]]) -> Optional[int]:
    """The address when it lies in the C library's data (not the program's symbol of that name)."""
    return address if address is not None and (not spans or any(a <= address < b for a, b in spans)) else None


def _signed32(value: int) -> int:
    value &= 0xffffffff
    return value - (1 << 32) if value >> 31 else value


def _loader(maps: List[mappings.Mapping]) -> Optional[str]:
    return next((m.path for m in maps if re.match(r"ld-(linux|\d)", os.path.basename(m.path))), None)


def _span(maps: List[mappings.Mapping], path: Optional[str]) -> Optional[Tuple[int, int]]:
    spans = [(m.start, m.end) for m in maps if path and m.path == path]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def _addresses(maps: List[mappings.Mapping], libc_path: Optional[str]) -> Dict[str, int]:
    """Where each traced function starts: libc's ELF symbols plus its load address; for a
    static program, the program's own symbols."""
    progspace = gdb.current_progspace()
    path = libc_path or (progspace.filename if progspace is not None else None)
    if not path or not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    names = set(CALLS) | set(SYSCALLS) | {a for alias in ALIASES.values() for a in alias}
    symbols = elf.function_symbols(data, names)
    loads = [h for h in elf.program_headers(data) if h.type == elf.PT_LOAD]
    first_vaddr = min((h.vaddr for h in loads), default=0) & ~0xfff
    starts = [m.start for m in maps if m.path == path]
    base = (min(starts) - first_vaddr) if starts and _is_shared(data) else 0
    out = {}
    for name in set(CALLS) | set(SYSCALLS):
        for candidate in (name,) + ALIASES.get(name, ()):
            if candidate in symbols:
                out[name] = base + symbols[candidate]
                break
    return out


def _is_shared(data: bytes) -> bool:
    """ET_DYN: a shared library or a position-independent program, loaded at a base."""
    return int.from_bytes(data[16:18], "little" if data[5] == 1 else "big") == 3


def _describe(pc: int) -> Optional[str]:
    """"function at file:line" for a return address (the call is just before it)."""
    at = pc - 1
    sal = gdb.find_pc_line(at)
    block = None
    try:
        block = gdb.block_for_pc(at)
    except RuntimeError:
        pass
    while block is not None and block.function is None:
        block = block.superblock
    function = block.function if block is not None else None
    name = function.name if function is not None else None
    if name is None:
        sym = symbol_at(at)
        name = sym.name if sym is not None else None
    where = f"{sal.symtab.filename}:{sal.line}" if sal.symtab is not None and sal.line else None
    if name and where:
        return f"{name} at {where}"
    return name or where or f"{pc:#x}"


def start(ring: int) -> None:
    global _tracer
    if _tracer is not None:
        raise HeapError("already tracing; heap trace stop first (or heap trace to see the calls)")
    LOG.resize(ring)
    _tracer = Tracer()


def stop() -> bool:
    """Stops tracing; every breakpoint it set is deleted.  False: it was not tracing."""
    global _tracer
    if _tracer is None:
        return False
    tracer, _tracer = _tracer, None
    tracer.remove()
    return True


def in_progress() -> int:
    return len(_tracer.pending) if _tracer is not None else 0
