"""Finding glibc's allocator state in the inferior: main_arena, mp_, tcache, the version.

Symbols first (libc's debug info, or ELF symbols of a static program); the layout comes from
layouts.py's table and is checked against debug info where gdb has it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Set, Tuple, TypeVar

import gdb  # type: ignore[import-not-found,unused-ignore]

from . import heuristics, mappings, model
from .errors import HeapError, MemoryReadError
from .layouts import (FEATURES, GlibcLayout, StructLayout, Version, layout_for, NEWEST_KNOWN, OLDEST_SUPPORTED,
                      without_tcache)
from .heap import ThreadInfo
from .memory import Reader
from .elf import has_interpreter, program_headers
from .mmapped import core_segments
from .symbols import Symbol, parse as parse_symbol

T = TypeVar("T")
NOT_INITIALISED = ("the heap is not initialised yet: the program has not called malloc (no heap, no chunks); "
                   "continue past its first malloc")
BANNER = heuristics.BANNER
_version_cache: Dict[Tuple[str, int, float], Optional[Version]] = {}
_warned: Set[str] = set()


@dataclass
class Located:
    """What one command found: the search's State and the selected thread's TLS pointers."""

    state: State
    tls: ThreadTls
    context: Context


def _address_of(name: str) -> Optional[int]:
    try:
        return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))
    except gdb.error:
        return None


def require_process() -> None:
    # A core file is as good as a process (its pid may be 0 when the core does not say).
    if gdb.selected_thread() is None or (gdb.selected_inferior().pid == 0 and not is_core()):
        raise HeapError("no process; start the program (run, start) or load a core file first")


def word_size() -> int:
    return int(gdb.lookup_type("void").pointer().sizeof)


def libc_version(libc_path: Optional[str]) -> Optional[Version]:
    """The version in libc's own banner ("... release version 2.36."), read from its file."""
    if not libc_path or not os.path.isfile(libc_path):
        return None
    st = os.stat(libc_path)
    key = (libc_path, st.st_size, st.st_mtime)
    if key not in _version_cache:
        found: Optional[Version] = None
        with open(libc_path, "rb") as f:
            m = BANNER.search(f.read())
        if m:
            found = (int(m.group(1)), int(m.group(2)))
        _version_cache[key] = found
    return _version_cache[key]


def _struct_from_debug(c_name: str, given: Optional[gdb.Type] = None) -> Optional[StructLayout]:
    """A struct's layout as glibc's debug info describes it, or None without debug info.
    `given`: the type of the very variable read (two libraries may each define the struct)."""
    try:
        t = (given or gdb.lookup_type(c_name)).strip_typedefs()
    except gdb.error:
        return None
    fields: Dict[str, Tuple[int, int, int]] = {}
    for f in t.fields():
        if f.name is None or f.bitpos is None or f.type is None:
            continue
        ft = f.type.strip_typedefs()
        if ft.code == gdb.TYPE_CODE_ARRAY:
            lo, hi = ft.range()
            elem = ft.target().strip_typedefs().sizeof
            fields[f.name] = (f.bitpos // 8, elem, hi - lo + 1)
        else:
            fields[f.name] = (f.bitpos // 8, ft.sizeof, 1)
    return StructLayout(c_name.replace("struct ", ""), t.sizeof, fields)


def _check_layout(layout: GlibcLayout, types: Optional[Dict[str, gdb.Type]] = None) -> GlibcLayout:
    """Compare the table's structs with debug info; where they disagree, debug info wins.
    `types`: the struct types of the main_arena and mp_ found (by malloc_state, malloc_par)."""
    types = types or {}
    notes = list(layout.notes)
    changes: Dict[str, StructLayout] = {}
    for attr, c_name in (("malloc_state", "struct malloc_state"), ("malloc_par", "struct malloc_par"),
                         ("tcache_perthread", "tcache_perthread_struct"), ("heap_info", "heap_info")):
        ours: StructLayout = getattr(layout, attr)
        theirs = _struct_from_debug(c_name, types.get(attr))
        if theirs is None:
            continue
        shared = [n for n in ours.fields if n in theirs.fields]
        differs = (ours.size != theirs.size and attr != "heap_info") or any(
            ours.fields[n][0] != theirs.fields[n][0] for n in shared) or len(shared) < len(ours.fields)
        if differs:
            notes.append(f"{c_name}: debug info differs from the glibc {layout.version[0]}.{layout.version[1]} "
                         f"table; using debug info")
            # Debug info's offsets win; a field it does not name keeps the table's.
            merged = dict(ours.fields)
            merged.update(theirs.fields)
            changes[attr] = StructLayout(ours.name, ours.size if attr == "heap_info" else theirs.size, merged)
    source = "debug info (checked)" if _struct_from_debug("struct malloc_state", types.get("malloc_state")) else "table"
    return replace(layout, source=source, notes=tuple(notes), **changes)  # type: ignore[arg-type]


def _tls_offset_in_libc(name: str) -> Optional[int]:
    """The offset of a TLS variable in libc's TLS block, from `info address`.  Asked only of a
    symbol gdb knows: a gdb.execute that fails inside a breakpoint condition ($heap_is_free)
    leaves the stopped thread marked running in gdb 10 to 13 ("Selected thread is running")."""
    try:
        gdb.parse_and_eval(f"&{name}")
    except gdb.error as e:
        if "No symbol" in str(e):
            return None
    try:
        text = gdb.execute(f"info address {name}", to_string=True)
    except gdb.error:
        return None
    m = re.search(r"thread-local variable at offset (0x[0-9a-f]+)", text)
    return int(m.group(1), 16) if m else None


def _libc_tls_base(reader: Reader, libc_path: Optional[str], tp: int) -> Optional[int]:
    """x86 static TLS (variant II): libc's block sits at the thread pointer - l_tls_offset.

    Reads libc's link_map from _r_debug (no libthread_db needed); l_tls_offset's offset in
    the private part of struct link_map comes from ld.so's debug info.
    """
    if not libc_path:
        return None
    try:
        r_debug = int(gdb.parse_and_eval("(unsigned long)&_r_debug"))
        ld_block = gdb.block_for_pc(int(gdb.parse_and_eval("(unsigned long)&_dl_debug_state")))
        if ld_block is None:
            return None
        link_map = gdb.lookup_type("struct link_map", ld_block).strip_typedefs()
    except (gdb.error, RuntimeError):
        return None
    offsets = {f.name: f.bitpos // 8 for f in link_map.fields() if f.bitpos is not None}
    if "l_tls_offset" not in offsets:
        return None
    S = reader.size_sz
    try:
        lm = reader.word(r_debug + S)  # r_debug.r_map
        for _ in range(4096):
            if not lm:
                return None
            name_ptr = reader.word(lm + S)
            name = reader.read(name_ptr, 256).split(b"\0", 1)[0].decode(errors="replace")
            if name and os.path.basename(name) == os.path.basename(libc_path):
                return tp - reader.word(lm + offsets["l_tls_offset"])
            lm = reader.word(lm + 3 * S)  # l_next
    except MemoryReadError:
        return None
    return None


# -- thread-local variables: tcache, thread_arena ------------------------------------------

@dataclass
class Context:
    """What the per-thread searches need, gathered once per command."""

    reader: Reader
    layout: GlibcLayout
    libc_path: Optional[str]
    maps: List[mappings.Mapping]
    arenas: List[int]  # every arena's address
    heaps: List[Tuple[int, int]]  # every arena's heap spans: a tcache struct is a chunk in one
    tcbs: Optional[Dict[int, List[int]]] = None  # i386: thread pointers by LWP, found once
    allocator: Optional[str] = None  # the library whose TLS variables to read, when several have them


@dataclass
class ThreadTls:
    tcache: Optional[int]
    tcache_how: str
    arena: Optional[int]


def _gdb_tls(name: str, library: Optional[str] = None) -> Optional[int]:
    """A TLS variable through gdb (debug symbols); `library`: the one of that library's copy."""
    try:
        if library is not None:
            symbol = _static_symbols(name).get(library)
            return int(symbol.value()) if symbol is not None else None
        return int(gdb.parse_and_eval(f"(unsigned long){name}"))
    except (gdb.error, RuntimeError):
        return None


def thread_pointer(ctx: Context) -> Optional[int]:
    """The selected thread's TCB address.  x86-64: $fs_base.  i386: gdb shows only the %gs
    selector, so the TCB is found in memory by its self-pointers and the thread's LWP."""
    if ctx.reader.size_sz == 8:
        try:
            return int(gdb.parse_and_eval("(unsigned long)$fs_base")) or None
        except gdb.error:
            return None
    thread = gdb.selected_thread()
    if thread is None:
        return None
    if ctx.tcbs is None:  # one scan for every thread
        lwps = [t.ptid[1] or t.inferior.pid for t in thread.inferior.threads()]
        spans = mappings.tcb_spans(ctx.maps, ctx.heaps, heuristics.TCB_SCAN)
        # A thread's TCB sits at the top of its stack allocation, just above the little of
        # it that a stopped thread uses (its mapping may have merged with a neighbour).
        spans += [(sp, sp + heuristics.TCB_SCAN) for sp in _stack_pointers()]
        ctx.tcbs = heuristics.thread_pointers(ctx.reader, spans, lwps)
    found = ctx.tcbs.get(thread.ptid[1] or thread.inferior.pid, [])
    return found[0] if len(found) == 1 else None


# tcbhead_t's multiple_threads follows tcb, dtv and self (sysdeps/{x86_64,i386}/nptl/tls.h):
# pthread_create sets the creator's, allocate_stack each new thread's, and nothing clears them.
MULTIPLE_THREADS_WORD = 3


def single_thread(ctx: Context) -> bool:
    """glibc's SINGLE_THREAD_P for the selected thread: true until the program's first
    pthread_create, never again.  Several live threads; else __libc_single_threaded (2.32+, what
    x86-64's malloc reads from 2.36; gdb finds the program's copy first when it has one, and libc
    then writes that copy); else the thread header's multiple_threads (what i386's malloc reads:
    set by the same calls); else (neither readable) true."""
    if len(gdb.selected_inferior().threads()) > 1:
        return False
    try:
        return int(gdb.parse_and_eval("*(unsigned char *)&__libc_single_threaded")) != 0
    except (gdb.error, gdb.MemoryError, RuntimeError):
        pass
    tp = thread_pointer(ctx)
    try:
        return not tp or ctx.reader.read(tp + MULTIPLE_THREADS_WORD * ctx.reader.size_sz, 4) == bytes(4)
    except MemoryReadError:
        return True


def visit_threads(visit: Callable[[gdb.InferiorThread], T]) -> List[T]:
    """visit(thread) with each live thread selected in turn, in gdb's order; then the user's
    thread and frame are selected again.  Switching threads changes nothing in the inferior."""
    selected = gdb.selected_thread()
    if selected is None:
        return []
    try:
        frame: Optional[gdb.Frame] = gdb.selected_frame()
    except gdb.error:
        frame = None
    out = []
    try:
        for thread in sorted(selected.inferior.threads(), key=lambda t: t.num):
            if thread.is_valid():
                thread.switch()
                out.append(visit(thread))
    finally:
        selected.switch()
        if frame is not None and frame.is_valid():
            frame.select()
    return out


def _stack_pointer(_: gdb.InferiorThread) -> Optional[int]:
    try:
        return int(gdb.parse_and_eval("(unsigned long)$sp"))
    except gdb.error:
        return None


def _stack_pointers() -> List[int]:
    """Every thread's $sp."""
    return [sp for sp in visit_threads(_stack_pointer) if sp is not None]


def thread_tls(ctx: Context) -> ThreadTls:
    """The selected thread's tcache and thread_arena, and how the tcache was found."""
    tcache, arena = _gdb_tls("tcache", ctx.allocator), _gdb_tls("thread_arena", ctx.allocator)
    if tcache is not None:
        return ThreadTls(tcache, "debug symbols (gdb's TLS support)", arena)
    reader, layout = ctx.reader, ctx.layout
    tp = thread_pointer(ctx)
    if tp is not None:
        base = _libc_tls_base(reader, ctx.libc_path, tp)
        offsets = [_tls_offset_in_libc(n) for n in ("tcache", "thread_arena")]
        if base is not None and offsets[0] is not None:
            try:
                tcache = reader.word(base + offsets[0])
                arena = reader.word(base + offsets[1]) if offsets[1] is not None else None
                return ThreadTls(tcache, "the thread pointer + libc's TLS offset (debug symbols)", arena)
            except MemoryReadError:
                pass
        where = mappings.containing(ctx.maps, tp)
        low = where.start if where else tp - heuristics.TLS_WINDOW
        arena, slot = heuristics.tls_arena(reader, tp, low, ctx.arenas)
        tcache = heuristics.tls_tcache(reader, layout, slot, ctx.heaps) if slot is not None else None
        if tcache is not None:
            return ThreadTls(tcache, "heuristic: the TLS word next to thread_arena that points at a "
                                     "tcache-sized chunk", arena)
    if _is_main_thread() and ctx.heaps:
        first = _first_chunk_tcache(reader, layout, ctx.heaps[0][0])
        if first is not None:
            return ThreadTls(first, "heuristic: the first chunk of the main heap", arena)
    return ThreadTls(None, "not found: this thread has no tcache yet, or its TLS cannot be read", arena)


def _cheap_thread_pointer(ctx: Optional[Context]) -> Optional[int]:
    """The selected thread's TCB when it costs no search: $fs_base on x86-64; on i386 only
    when the TLS search already scanned for every thread's."""
    if ctx is None or (ctx.reader.size_sz != 8 and ctx.tcbs is None):
        return None
    return thread_pointer(ctx)


def _first_chunk_tcache(reader: Reader, layout: GlibcLayout, sbrk_base: int) -> Optional[int]:
    """The main thread's tcache struct when the layout says it is the heap's first chunk."""
    if not sbrk_base or not layout.tcache_heads_main_heap:
        return None
    first = layout.first_chunk(sbrk_base)
    try:
        size = reader.word(first + layout.size_sz) & ~7
    except MemoryReadError:
        return None
    return first + layout.header_size if size == layout.tcache_chunk_size else None


# -- the allocator's state ------------------------------------------------------------------

def _override(name: str) -> Optional[int]:
    """`set heap main-arena EXPR` / `set heap mp EXPR`: the user's own address."""
    try:
        text = str(gdb.parameter(f"heap {name}") or "").strip()
    except (gdb.error, RuntimeError):
        return None
    if not text:
        return None
    try:
        return int(gdb.parse_and_eval(f"(unsigned long)({text})"))
    except gdb.error as e:
        raise HeapError(f"set heap {name} {text}: {e}; give an address or an expression") from None


def _not_glibc(maps: List[mappings.Mapping]) -> Optional[str]:
    # musl's loader is its libc: /lib/ld-musl-ARCH.so.1, mapped from .../ARCH-linux-musl/libc.so.
    if any(os.path.basename(m.path).startswith("ld-musl") or "-linux-musl/" in m.path for m in maps) or (
            _address_of("__malloc_context") is not None):
        return "this program uses musl's malloc, not glibc's; gdb_heap reads glibc's malloc only"
    return None


@dataclass
class State:
    """What the search for malloc's state found: it holds while the inferior stays stopped."""

    main_arena: int
    mp: int
    version: Optional[Version]
    libc_path: Optional[str]
    layout: GlibcLayout
    located_by: str
    notes: List[str]
    tcbs: Optional[Dict[int, List[int]]] = None  # i386 thread pointers, once searched
    allocator: Optional[str] = None  # the library holding main_arena, when several libraries have one
    tcache_key: Optional[int] = None  # the address of glibc's tcache_key (2.34+), by its symbol
    data_spans: List[Tuple[int, int]] = field(default_factory=list)  # the C library's writable data


_states: Dict[Tuple[object, ...], State] = {}


def _forget(*_: object) -> None:
    """The inferior ran, loaded code or had memory written: search again next time."""
    _states.clear()


for _event in ("stop", "cont", "exited", "new_objfile", "clear_objfiles", "memory_changed", "new_inferior"):
    if hasattr(gdb.events, _event):
        getattr(gdb.events, _event).connect(_forget)


def _state_key() -> Tuple[object, ...]:
    inferior = gdb.selected_inferior()
    settings = []
    for name in ("main-arena", "mp"):
        try:
            settings.append(str(gdb.parameter(f"heap {name}") or ""))
        except (gdb.error, RuntimeError):
            settings.append("")
    progspace = gdb.current_progspace()
    return (inferior.num, inferior.pid, progspace.filename if progspace else None, *settings)


def locate(reader: Reader, maps: List[mappings.Mapping]) -> Located:
    require_process()
    key = _state_key()
    state = _states.get(key)
    if state is None or state.layout.size_sz != reader.size_sz:
        state = _states[key] = _search(reader, maps)
    ctx = _context(reader, state.layout, state.libc_path, maps, state.main_arena, state.mp)
    ctx.tcbs, ctx.allocator = state.tcbs, state.allocator
    tls = ThreadTls(None, "not found: this malloc has no tcache (glibc before 2.26, or glibc's debug malloc)", None)
    if state.layout.features.tcache:
        tls = thread_tls(ctx)
    else:
        tls.arena = thread_tls(ctx).arena
    state.tcbs = ctx.tcbs
    return Located(state, tls, ctx)


def _statically_linked(program: Optional[str]) -> bool:
    """The program file names no dynamic loader: its C library, if any, is in the program."""
    try:
        with open(program or "", "rb") as f:
            data = f.read(ELF_HEADERS_MAX)
    except OSError:
        return False
    return bool(program_headers(data)) and not has_interpreter(data)


def _search(reader: Reader, maps: List[mappings.Mapping]) -> State:
    size_sz = reader.size_sz
    chosen: Optional[Tuple[Allocator, str]] = None
    if _override("main-arena") is None and _override("mp") is None:
        found_libs = _allocators(size_sz)
        chosen = _choose_allocator(found_libs) if len(found_libs) > 1 else None
    main_arena = chosen[0].main_arena if chosen else _override("main-arena") or _address_of("main_arena")
    mp = chosen[0].mp if chosen else _override("mp") or _address_of("mp_")
    if main_arena is None and (why := _not_glibc(maps)):
        raise HeapError(why)
    progspace = gdb.current_progspace()
    program = progspace.filename if progspace else None
    if main_arena is None and is_core() and not any("libc" in (o.filename or "") for o in gdb.objfiles()) \
            and not mappings.libc_path(maps) and not _statically_linked(program):
        raise HeapError("cannot find glibc's main_arena: gdb found no C library in this core file (it lacks "
                        "the dynamic loader's data, e.g. filtered by coredump_filter); check that "
                        "`info sharedlibrary` lists libc")
    for name, symbol, address in (("main-arena", "main_arena", main_arena), ("mp", "mp_", mp)):
        if address is not None and not reader.readable(address):
            raise HeapError(f"cannot read {address:#x} (the {symbol} address); check the address or "
                            f"`set heap {name}` (empty: find it again)")
    libc_path = (main_arena and gdb.solib_name(main_arena)) or mappings.libc_path(maps) or program
    debug_malloc = bool(libc_path) and is_debug_malloc(libc_path or "")
    # glibc's debug malloc carries no version banner: it comes with the libc beside it
    banner_path = (mappings.libc_path(maps) or libc_path) if debug_malloc else libc_path
    version = libc_version(banner_path) or (
        heuristics.banner_version(reader, maps, banner_path) if banner_path else None)
    notes: List[str] = []
    spans = mappings.data_spans(maps, libc_path) if libc_path else []
    where = f"{os.path.basename(libc_path)}'s data" if libc_path else "the program's data"
    how: List[str] = []
    if version is not None and version < OLDEST_SUPPORTED:
        raise HeapError(f"glibc {version[0]}.{version[1]} is older than {OLDEST_SUPPORTED[0]}."
                        f"{OLDEST_SUPPORTED[1]}, the oldest this tool knows; use a newer glibc")
    types = {"malloc_state": chosen[0].arena_type, "malloc_par": chosen[0].mp_type} if chosen else {}
    layout = _check_layout(_built_as(layout_for(version, size_sz), debug_malloc), types)
    newer = version is not None and version > NEWEST_KNOWN
    if version is None or newer:  # no row to trust: the rows that fit memory
        found_arena, found_mp, rows = _infer(reader, size_sz, spans, main_arena, mp, where)
        how += [] if main_arena is not None else ["main_arena by its self-pointing bins"]
        how += [] if mp is not None else ["mp_ by its sbrk_base"]
        main_arena, mp = found_arena, found_mp
        layout = _check_layout(_built_as(layout_for(max(rows), size_sz), debug_malloc), types)
        if newer and version:
            notes.append(f"glibc {version[0]}.{version[1]} is newer than any version this tool was tested "
                         f"on; memory matches glibc {_rows_span(rows)}'s layout, which is used")
        else:
            notes.append(f"the glibc version is not written in {os.path.basename(libc_path or '?')} (static?); "
                         f"memory matches glibc {_rows_span(rows)}'s layout")
    if main_arena is None:
        candidates = heuristics.arena_candidates(reader, layout, spans)
        debug_path = None if debug_malloc or any(_has_heap(reader, layout, c.address) for c in candidates) \
            else next((m.path for m in maps if m.path and is_debug_malloc(m.path)), None)
        if debug_path:  # libc's main_arena has no heap: glibc's debug malloc may be serving malloc
            debug_layout = _check_layout(without_tcache(layout_for(layout.version, size_sz)))
            debug_spans = mappings.data_spans(maps, debug_path)
            found_debug = heuristics.arena_candidates(reader, debug_layout, debug_spans)
            if found_debug:
                candidates, spans, layout, libc_path = found_debug, debug_spans, debug_layout, debug_path
                where = f"{os.path.basename(debug_path)}'s data"
                notes.append(f"the main_arena of {os.path.basename(debug_path)}, glibc's debug malloc, which "
                             "serves malloc itself (MALLOC_CHECK_ on); the one in libc is unused")
        pristine = [] if candidates else heuristics.pristine_arena_candidates(reader, layout, spans)
        if pristine:  # before the first malloc: commands say so, as they do with symbols
            main_arena = heuristics.choose("main_arena", [heuristics.Candidate(a, 1) for a in pristine], where,
                                           "main-arena")
            how.append("main_arena by its static initialiser (malloc not called yet)")
        else:
            main_arena = heuristics.choose("main_arena", candidates, where, "main-arena")
            how.append("main_arena by its self-pointing bins")
    if mp is None:
        found = heuristics.mp_candidates(reader, layout, spans, main_arena) or [
            heuristics.Candidate(a, 1) for a in heuristics.pristine_mp_candidates(reader, layout, spans)]
        mp = heuristics.choose("mp_", found, where, "mp")
        how.append("mp_ by its sbrk_base")
    notes += layout.notes
    other = other_allocator()
    if other:
        notes.insert(0, other)
    if _override("main-arena") or _override("mp"):
        located_by = "set heap main-arena / mp (the user's addresses)"
    elif how:
        located_by = "heuristic: " + ", ".join(how) + f" in {where}"
    else:
        located_by = "debug symbols" if layout.source.startswith("debug info") else "ELF symbols"
    if chosen:
        located_by += f"; {chosen[1]}"
    key = _address_of("tcache_key") if layout.features.tcache_key_random else None
    if key is not None and spans and not any(a <= key < b for a, b in spans):
        key = None  # a symbol of that name elsewhere (the program's own), not glibc's
    return State(main_arena, mp, version, libc_path, layout, located_by, notes,
                 allocator=chosen[0].path if chosen else None, tcache_key=key, data_spans=spans)


# -- other allocators ---------------------------------------------------------------------------

# A symbol each allocator's library or runtime defines, and the allocator's name.  Rust's
# jemallocator prefixes jemalloc's names with _rjem_.
OTHER_ALLOCATORS = (("__asan_init", "AddressSanitizer's allocator (ASan)"),
                    ("__hwasan_init", "HWAddressSanitizer's allocator"),
                    ("__tsan_init", "ThreadSanitizer's allocator"),
                    ("__msan_init", "MemorySanitizer's allocator"),
                    ("je_malloc", "jemalloc"), ("mallocx", "jemalloc"), ("_rjem_mallocx", "jemalloc (Rust's)"),
                    ("tc_malloc", "tcmalloc"), ("mi_malloc", "mimalloc"))


def _defined(name: str) -> bool:
    """Whether a function of that name is known, with or without debug info.  gdb.decode_line
    asks gdb's symbol tables alone: parse_and_eval of a name that is not there costs 3-20 ms
    (the expression parser searches further), decode_line 0.2-0.5 ms, nine misses on a
    session's first command.  (Not `info address`: a failing gdb.execute inside a breakpoint
    condition leaves gdb 10-13 thinking the thread ran.)"""
    try:
        gdb.decode_line(name)
    except gdb.error:
        return False
    return True


def other_allocator() -> Optional[str]:
    """A note naming the allocator the program uses instead of glibc's malloc, found by its
    symbols, or None."""
    for symbol, name in OTHER_ALLOCATORS:
        if _defined(symbol):
            return (f"this program allocates with {name} ({symbol}), not glibc's malloc: glibc's heap is not "
                    "in use for its allocations; what follows is glibc's heap (only what calls glibc's malloc "
                    "directly, if anything)")
    return None


# -- glibc's debug malloc: a second main_arena ------------------------------------------------

DEBUG_MALLOC = "libc_malloc_debug"  # glibc's mtrace/mcheck/MALLOC_CHECK_ library (2.34+)
MALLOC_CHECK_HOOK = 1 << 2  # malloc-debug.c's enum malloc_debug_hooks: MALLOC_CHECK_ is on


def is_debug_malloc(path: str) -> bool:
    return os.path.basename(path).startswith(DEBUG_MALLOC)


def _has_heap(reader: Reader, layout: GlibcLayout, address: int) -> bool:
    """An arena that has taken memory from the system (2.43+ sets libc's main_arena up early, so
    an initialised arena may still be unused when glibc's debug malloc serves malloc)."""
    try:
        return model.read_malloc_state(reader, layout, address).system_mem != 0
    except MemoryReadError:
        return False


def _built_as(layout: GlibcLayout, debug_malloc: bool) -> GlibcLayout:
    """glibc builds libc_malloc_debug's copy of malloc.c with USE_TCACHE=0 (malloc/Makefile)."""
    return without_tcache(layout) if debug_malloc else layout


@dataclass
class Allocator:
    """One library's main_arena and mp_, found by its debug symbols."""

    path: str  # the library (gdb's name for it)
    main_arena: int
    mp: int
    in_use: bool  # its state shows a heap: top moved off its initial value, or sbrk_base set
    arena_type: gdb.Type
    mp_type: gdb.Type


def _owner(symbol: gdb.Symbol) -> Optional[str]:
    """The library a symbol belongs to (its separate debug file's owner)."""
    symtab = symbol.symtab
    if symtab is None:
        return None
    objfile = symtab.objfile
    return str((objfile.owner or objfile).filename)


def _static_symbols(name: str) -> Dict[str, gdb.Symbol]:
    """Every library's static variable `name`, by library (gdb 10+'s lookup_static_symbols)."""
    lookup = getattr(gdb, "lookup_static_symbols", None)
    if lookup is None:
        return {}
    try:
        return {path: s for s in lookup(name) if (path := _owner(s))}
    except (gdb.error, RuntimeError):
        return {}


def _allocators(size_sz: int) -> List[Allocator]:
    """Each library that has both main_arena and mp_ in its debug symbols: libc, and glibc's
    debug malloc when it is preloaded (it holds a copy of malloc.c, with its own state)."""
    arenas, mps = _static_symbols("main_arena"), _static_symbols("mp_")
    found = []
    for path, arena in arenas.items():
        mp = mps.get(path)
        if mp is None:
            continue
        try:
            a, m = arena.value(), mp.value()
            if a.address is None or m.address is None or arena.type is None or mp.type is None:
                continue
            initial_top = int(a["bins"].address or 0) - 2 * size_sz  # bin_at(1): top before the first sysmalloc
            in_use = int(a["top"]) not in (0, initial_top) or int(m["sbrk_base"]) != 0
            found.append(Allocator(path, int(a.address), int(m.address), in_use, arena.type, mp.type))
        except (gdb.error, gdb.MemoryError, RuntimeError):
            continue
    return found


def _malloc_check_on(path: str) -> bool:
    hooks = _static_symbols("__malloc_debugging_hooks").get(path)
    try:
        return hooks is not None and bool(int(hooks.value()) & MALLOC_CHECK_HOOK)
    except (gdb.error, gdb.MemoryError, RuntimeError):
        return False


def _choose_allocator(found: List[Allocator]) -> Tuple[Allocator, str]:
    """The library whose main_arena the process uses, and a note saying which and why: the one
    whose state shows a heap; if both or neither do, glibc's debug malloc when MALLOC_CHECK_ is
    on (it then serves every malloc from its own copy), else libc (the debug library passes
    malloc on to it)."""
    debug = next((a for a in found if is_debug_malloc(a.path)), None)
    checking = debug is not None and _malloc_check_on(debug.path)
    used = [a for a in found if a.in_use]
    if len(used) == 1:
        chosen = used[0]
    else:
        chosen = debug if checking and debug is not None else next(
            (a for a in found if not is_debug_malloc(a.path)), found[0])
    name = os.path.basename(chosen.path)
    others = ", ".join(os.path.basename(a.path) for a in found if a is not chosen)
    if debug is None:
        why = f"the main_arena of {name}"
    elif chosen is debug:
        why = (f"the main_arena of {name}, glibc's debug malloc" +
               (", which serves malloc itself with MALLOC_CHECK_ on" if checking else ""))
    else:
        why = f"the main_arena of {name} ({os.path.basename(debug.path)} is preloaded and passes malloc on to it)"
    unused = [a for a in found if a is not chosen and not a.in_use]
    if unused:
        why += f"; the one in {', '.join(os.path.basename(a.path) for a in unused)} is unused"
    if len(used) > 1:
        why += f"; {others} has a heap too: see it with set heap main-arena and set heap mp"
    if not used:
        why += "; no library's main_arena has a heap yet"
    return chosen, why


def _infer(reader: Reader, size_sz: int, spans: List[Tuple[int, int]], main_arena: Optional[int],
           mp: Optional[int], where: str) -> Tuple[int, int, List[Version]]:
    """main_arena, mp_ and the table rows that fit them, for a C library without a version."""
    fits = heuristics.infer_state(reader, size_sz, spans, main_arena, mp)
    if not fits:
        for layout in heuristics.distinct_layouts(size_sz):
            if heuristics.pristine_arena_candidates(reader, layout, spans):
                raise HeapError(NOT_INITIALISED)
        heuristics.choose("main_arena", [], where, "main-arena")
    top = fits[0]
    rivals = {(f.main_arena, f.mp) for f in fits if f.score > top.score - 2}
    if len(rivals) > 1:
        listed = ", ".join(f"main_arena {a:#x} with mp_ {m:#x}" for a, m in sorted(rivals))
        raise HeapError(f"several candidates in {where} ({listed}); choose with set heap main-arena ADDR "
                        "and set heap mp ADDR")
    rows = [f.version for f in fits if (f.main_arena, f.mp, f.score) == (top.main_arena, top.mp, top.score)]
    try:
        sbrk = reader.word(top.mp + layout_for(max(rows), size_sz).malloc_par.offset("sbrk_base"))
    except MemoryReadError:
        sbrk = 0
    return top.main_arena, top.mp, heuristics.narrow_versions(reader, size_sz, rows, sbrk) or rows


def _rows_span(rows: List[Version]) -> str:
    """"2.35-2.37" for rows 2.35 and 2.37: from the oldest row to the last version the newest covers."""
    later = [v for v, _ in FEATURES if v > max(rows)]
    last = (later[0][0], later[0][1] - 1) if later else max(rows)
    first = min(rows)
    return f"{first[0]}.{first[1]}" + ("" if last == first else f"-{last[0]}.{last[1]}")


def _context(reader: Reader, layout: GlibcLayout, libc_path: Optional[str], maps: List[mappings.Mapping],
             main_arena: int, mp: int) -> Context:
    arenas: List[int] = []
    heaps: List[Tuple[int, int]] = []
    try:
        par = model.read_malloc_par(reader, layout, mp)
        for arena in model.read_arenas(reader, layout, main_arena, par, lambda: maps):
            arenas.append(arena.address)
            heaps += model.heap_spans(reader, arena, par.sbrk_base)
    except MemoryReadError:
        pass
    return Context(reader, layout, libc_path, maps, arenas, heaps)


def _is_main_thread() -> bool:
    thread = gdb.selected_thread()
    return thread is not None and thread.ptid[1] in (0, thread.inferior.pid)


def threads_info(ctx: Optional[Context]) -> List[ThreadInfo]:
    """Every thread's tcache and thread_arena, in gdb's thread order."""
    selected = gdb.selected_thread()
    if selected is None:
        return []
    chosen = selected.ptid

    def visit(thread: gdb.InferiorThread) -> ThreadInfo:
        tls = thread_tls(ctx) if ctx is not None else ThreadTls(None, "", None)
        return ThreadInfo(thread.num, thread.ptid[1] or thread.inferior.pid, thread.ptid == chosen,
                          tls.tcache or None, tls.arena or None, _stack_pointer(thread),
                          _cheap_thread_pointer(ctx))
    return visit_threads(visit)


CORE_HEADERS_MAX = 1 << 22
ELF_HEADERS_MAX = 1 << 16  # a program's program headers follow its ELF header
CORE_FILE = re.compile(r"Local core dump file:\s*`(.*)', file type")


def _proc_mappings() -> List[mappings.Mapping]:
    """`info proc mappings`: every mapping of a live process; in a core, the file-backed ones."""
    try:
        return mappings.parse(gdb.execute("info proc mappings", to_string=True))
    except gdb.error:
        return []


def symbol_at(address: int) -> Optional[Symbol]:
    """gdb's `info symbol`: the one lookup of a symbol by address every command uses."""
    try:
        return parse_symbol(gdb.execute(f"info symbol {address:#x}", to_string=True))
    except (gdb.error, RuntimeError):
        return None


def is_core() -> bool:
    connection = getattr(gdb.selected_inferior(), "connection", None)  # gdb 12+
    if connection is not None:
        return getattr(connection, "type", None) == "core"
    try:
        return "Local core dump file" in gdb.execute("info files", to_string=True)
    except gdb.error:
        return False


def process_mappings() -> Tuple[List[mappings.Mapping], str]:
    """The process's memory mappings and where they came from: /proc (through `info proc
    mappings`) for a live process; a core file's own segments, named after the files its note
    lists, for a core."""
    if not is_core():
        return _proc_mappings(), "info proc mappings"
    m = CORE_FILE.search(gdb.execute("info files", to_string=True))
    if not m or not os.path.isfile(m.group(1)):
        raise HeapError("cannot find the core file's name in `info files`; load the core with "
                        "gdb PROGRAM CORE or core-file CORE")
    with open(m.group(1), "rb") as f:
        data = f.read(CORE_HEADERS_MAX)  # a core's program headers follow its ELF header
    segments = core_segments(data)
    files = _proc_mappings()
    for seg in segments:
        seg.path = next((f.path or "?" for f in files if f.start < seg.end and seg.start < f.end), "")
    return segments, "the core file's segments"


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        gdb.write(f"heap: warning: {message}\n", gdb.STDERR)
