"""Finding glibc's allocator state in the inferior: main_arena, mp_, tcache, the version.

Symbols first (libc's debug info, or ELF symbols of a static program); the layout comes from
layouts.py's table and is checked against debug info where gdb has it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Set, Tuple

import gdb  # type: ignore[import-not-found,unused-ignore]

from .errors import HeapError, MemoryReadError
from .layouts import GlibcLayout, StructLayout, Version, layout_for, NEWEST_KNOWN, OLDEST_SUPPORTED
from .heap import ThreadInfo
from .memory import Reader
from .mmapped import Mapping, core_segments

BANNER = re.compile(rb"release version (\d+)\.(\d+)")
_version_cache: Dict[Tuple[str, int, float], Optional[Version]] = {}
_warned: Set[str] = set()


@dataclass
class Located:
    size_sz: int
    main_arena: int
    mp: int
    version: Optional[Version]
    libc_path: Optional[str]
    layout: GlibcLayout
    located_by: str
    tcache: Optional[int]  # the selected thread's tcache_perthread_struct, None if it has none
    tcache_found_by: str
    thread_arena: Optional[int]
    notes: List[str] = field(default_factory=list)


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


def _struct_from_debug(c_name: str) -> Optional[StructLayout]:
    """A struct's layout as glibc's debug info describes it, or None without debug info."""
    try:
        t = gdb.lookup_type(c_name).strip_typedefs()
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


def _check_layout(layout: GlibcLayout) -> GlibcLayout:
    """Compare the table's structs with debug info; where they disagree, debug info wins."""
    notes = list(layout.notes)
    changes: Dict[str, StructLayout] = {}
    for attr, c_name in (("malloc_state", "struct malloc_state"), ("malloc_par", "struct malloc_par"),
                         ("tcache_perthread", "tcache_perthread_struct"), ("heap_info", "heap_info")):
        ours: StructLayout = getattr(layout, attr)
        theirs = _struct_from_debug(c_name)
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
    source = "debug info (checked)" if _struct_from_debug("struct malloc_state") else "table"
    return replace(layout, source=source, notes=tuple(notes), **changes)  # type: ignore[arg-type]


def _tls_offset_in_libc(name: str) -> Optional[int]:
    """The offset of a TLS variable in libc's TLS block, from `info address`."""
    try:
        text = gdb.execute(f"info address {name}", to_string=True)
    except gdb.error:
        return None
    m = re.search(r"thread-local variable at offset (0x[0-9a-f]+)", text)
    return int(m.group(1), 16) if m else None


def _libc_tls_base(reader: Reader, libc_path: Optional[str]) -> Optional[int]:
    """x86-64 static TLS: libc's block sits at $fs_base - link_map.l_tls_offset.

    Reads libc's link_map from _r_debug (no libthread_db needed); l_tls_offset's offset in
    the private part of struct link_map comes from ld.so's debug info.
    """
    if reader.size_sz != 8 or not libc_path:
        return None
    try:
        fs_base = int(gdb.parse_and_eval("(unsigned long)$fs_base"))
        r_debug = int(gdb.parse_and_eval("(unsigned long)&_r_debug"))
        ld_block = gdb.block_for_pc(int(gdb.parse_and_eval("(unsigned long)&_dl_debug_state")))
        if ld_block is None:
            return None
        link_map = gdb.lookup_type("struct link_map", ld_block).strip_typedefs()
    except (gdb.error, RuntimeError):
        return None
    offsets = {f.name: f.bitpos // 8 for f in link_map.fields() if f.bitpos is not None}
    if "l_tls_offset" not in offsets or fs_base == 0:
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
                return fs_base - reader.word(lm + offsets["l_tls_offset"])
            lm = reader.word(lm + 3 * S)  # l_next
    except MemoryReadError:
        return None
    return None


def _tls_pointer(name: str, reader: Reader, libc_path: Optional[str]) -> Tuple[Optional[int], str]:
    """The value of libc's TLS pointer variable `name` in the selected thread, and how."""
    try:
        return int(gdb.parse_and_eval(f"(unsigned long){name}")), "debug symbols (gdb's TLS support)"
    except gdb.error:
        pass
    offset = _tls_offset_in_libc(name)
    base = _libc_tls_base(reader, libc_path) if offset is not None else None
    if base is not None and offset is not None:
        try:
            return reader.word(base + offset), "thread pointer + libc's TLS offset"
        except MemoryReadError:
            pass
    return None, "not found"


def _first_chunk_tcache(reader: Reader, layout: GlibcLayout, sbrk_base: int) -> Optional[int]:
    """Up to glibc 2.41 the main thread's tcache struct is the heap's first chunk."""
    if not sbrk_base or layout.version >= (2, 42):
        return None
    first = layout.first_chunk(sbrk_base)
    try:
        size = reader.word(first + layout.size_sz) & ~7
    except MemoryReadError:
        return None
    return first + layout.header_size if size == layout.request2size(layout.tcache_perthread.size) else None


def locate(reader: Reader) -> Located:
    require_process()
    size_sz = reader.size_sz
    main_arena = _address_of("main_arena")
    mp = _address_of("mp_")
    if (main_arena is None or mp is None) and is_core() and not any(
            "libc" in (o.filename or "") for o in gdb.objfiles()):
        raise HeapError("cannot find glibc's main_arena and mp_: gdb found no C library in this core file "
                        "(it lacks the dynamic loader's data, e.g. filtered by coredump_filter); check that "
                        "`info sharedlibrary` lists libc")
    if main_arena is None or mp is None:
        raise HeapError("cannot find glibc's main_arena and mp_ (no symbols for the C library); install "
                        "its debug symbols (Debian: apt install libc6-dbg) or check that the program "
                        "uses glibc's malloc")
    progspace = gdb.current_progspace()
    libc_path = gdb.solib_name(main_arena) or (progspace.filename if progspace else None)
    version = libc_version(libc_path)
    notes: List[str] = []
    if version is None:
        notes.append("the glibc version was not found in the C library's file; assuming the newest layout")
    elif version > NEWEST_KNOWN:
        notes.append(f"glibc {version[0]}.{version[1]} is newer than any tested version; using the "
                     f"{NEWEST_KNOWN[0]}.{NEWEST_KNOWN[1]} layout")
    elif version < OLDEST_SUPPORTED:
        raise HeapError(f"glibc {version[0]}.{version[1]} is older than {OLDEST_SUPPORTED[0]}."
                        f"{OLDEST_SUPPORTED[1]}, the oldest this tool knows; use a newer glibc")
    layout = _check_layout(layout_for(version, size_sz))
    notes += layout.notes
    located_by = "debug symbols" if layout.source.startswith("debug info") else "ELF symbols"
    tcache, tcache_how = (None, "this glibc has no tcache")
    if layout.features.tcache:
        tcache, tcache_how = _tls_pointer("tcache", reader, libc_path)
        if tcache is None and _is_main_thread():
            try:
                sbrk_base = reader.word(mp + layout.malloc_par.offset("sbrk_base"))
            except MemoryReadError:
                sbrk_base = 0
            tcache = _first_chunk_tcache(reader, layout, sbrk_base)
            tcache_how = "heuristic: the first chunk of the main heap" if tcache else "not found"
    thread_arena, _ = _tls_pointer("thread_arena", reader, libc_path)
    return Located(size_sz, main_arena, mp, version, libc_path, layout, located_by, tcache or None,
                   tcache_how, thread_arena or None, notes)


def _is_main_thread() -> bool:
    thread = gdb.selected_thread()
    return thread is not None and thread.ptid[1] in (0, thread.inferior.pid)


def threads_info(reader: Reader, libc_path: Optional[str]) -> List[ThreadInfo]:
    """Every thread's tcache and thread_arena, in gdb's thread order.

    Switches gdb to each thread in turn (which changes nothing in the inferior) and back to
    the thread and frame the user had selected.
    """
    selected = gdb.selected_thread()
    if selected is None:
        return []
    try:
        frame: Optional[gdb.Frame] = gdb.selected_frame()
    except gdb.error:
        frame = None
    found = []
    try:
        for thread in sorted(selected.inferior.threads(), key=lambda t: t.num):
            if not thread.is_valid():
                continue
            thread.switch()
            tcache, _ = _tls_pointer("tcache", reader, libc_path)
            arena, _ = _tls_pointer("thread_arena", reader, libc_path)
            found.append(ThreadInfo(thread.num, thread.ptid[1] or thread.inferior.pid, thread.ptid == selected.ptid,
                                    tcache or None, arena or None))
    finally:
        selected.switch()
        if frame is not None and frame.is_valid():
            frame.select()
    return found


# start, end, size, offset, [perms (gdb 12+)], objfile
MAPPING_LINE = re.compile(r"^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s*"
                          r"(?:([r-][w-][x-][ps])\s*)?(.*)$")
CORE_HEADERS_MAX = 1 << 22
CORE_FILE = re.compile(r"Local core dump file:\s*`(.*)', file type")


def _proc_mappings() -> List[Mapping]:
    """`info proc mappings`: every mapping of a live process; in a core, the file-backed ones."""
    try:
        text = gdb.execute("info proc mappings", to_string=True)
    except gdb.error:
        return []
    out = []
    for line in text.splitlines():
        m = MAPPING_LINE.match(line)
        if m:
            out.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(4).strip(),
                               m.group(3) is None or m.group(3).startswith("r")))
    return out


def is_core() -> bool:
    connection = getattr(gdb.selected_inferior(), "connection", None)  # gdb 12+
    if connection is not None:
        return getattr(connection, "type", None) == "core"
    try:
        return "Local core dump file" in gdb.execute("info files", to_string=True)
    except gdb.error:
        return False


def process_mappings() -> Tuple[List[Mapping], str]:
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
        seg.name = next((f.name or "?" for f in files if f.start < seg.end and seg.start < f.end), "")
    return segments, "the core file's segments"


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        gdb.write(f"heap: warning: {message}\n", gdb.STDERR)
