"""Finding mmapped chunks: chunks that are a mapping of their own, held by no arena or bin.

gdb-free: a list of memory mappings goes in, the chunks whose headers check out come out.
glibc keeps no list of them (only the counters mp_.n_mmaps and mp_.mmapped_mem), so the
scan looks at the start of every anonymous mapping.  The kernel merges neighbouring
anonymous mappings with the same protection into one, so after a chunk that ends before its
mapping does, the scan tries the next header right after it.  A merged mapping need not
start with a chunk (a program's own mmap may come first), so when the chunks found do not
add up to glibc's counters, find_all goes on to every page start of the anonymous mappings
(every mmapped chunk's mapping starts on a page), reading them in large blocks, until the
counters agree or a byte budget runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .elf import PF_R, PF_W, PT_LOAD, program_headers
from .errors import MemoryReadError
from .layouts import GlibcLayout
from .mappings import Mapping
from .memory import Reader
from .model import IS_MMAPPED, NON_MAIN_ARENA, SIZE_BITS

PAGE = 4096
PAGE_SCAN_BUDGET = 1 << 30  # bytes of anonymous memory the page scan may read per command
PAGE_SCAN_BLOCK = 1 << 20  # bytes per read: pages are looked at in the buffer, not one read each
MAX_CHUNKS_PER_MAPPING = 1 << 16  # bound on a chain of headers inside one mapping
MEMALIGN_SEARCH = 1 << 16  # how far into a chunk a memalign'd header is looked for


@dataclass
class MmappedChunk:
    address: int
    user_address: int
    prev_size: int  # the alignment slack between the mapping's start and the chunk
    size_field: int
    mapping_start: int  # where this chunk's own mmap starts (chunk - prev_size)
    mapping_end: int  # where it ends
    region_start: int  # the (possibly merged) mapping the chunk was found in
    region_end: int


def mmapped_span(layout: GlibcLayout, prev_size: int, size: int) -> int:
    """Bytes of the chunk's own mmap: prev_size + size, plus a trailing header from 2.43."""
    return prev_size + size + (layout.header_size if layout.features.mmap_chunk_v2 else 0)


def mmapped_header(layout: GlibcLayout, chunk: int, prev_size: int, size_field: int,
                   limit: Optional[int] = None) -> bool:
    """Would glibc have written this header for an mmapped chunk at `chunk`?  IS_MMAPPED set,
    NON_MAIN_ARENA clear, the user pointer aligned, the mapping (from chunk - prev_size) a whole
    number of pages starting on a page, and (given `limit`) ending by it."""
    size = size_field & ~SIZE_BITS
    if not size_field & IS_MMAPPED or size_field & NON_MAIN_ARENA or size < layout.minsize:
        return False
    if (chunk + layout.header_size) % layout.malloc_alignment or (chunk - prev_size) % PAGE:
        return False
    span = mmapped_span(layout, prev_size, size)
    if span % PAGE:
        return False
    return limit is None or chunk - prev_size + span <= limit


def scan_mapping(reader: Reader, layout: GlibcLayout, mapping: Mapping) -> List[MmappedChunk]:
    """The mmapped chunks laid end to end from the start of `mapping`."""
    found: List[MmappedChunk] = []
    pos = mapping.start
    while pos < mapping.end and len(found) < MAX_CHUNKS_PER_MAPPING:
        chunk = chunk_at_page(reader, layout, pos, mapping)
        if chunk is None:
            break
        found.append(chunk)
        pos = chunk.mapping_end
    return found


def chunk_at_page(reader: Reader, layout: GlibcLayout, pos: int, mapping: Mapping) -> Optional[MmappedChunk]:
    """The mmapped chunk whose own mapping starts at `pos` (a page inside `mapping`), if any."""
    # sysmalloc moves the chunk up until its user pointer is aligned (i386: 8 bytes, its
    # prev_size then says 8); memalign moves it further (prev_size: its whole slack).
    lead = layout.first_chunk(pos) - pos
    try:
        prev_size = reader.word(pos + lead)
        if prev_size != lead:
            prev_size = reader.word(pos)
        # prev_size is the slack before the chunk: it stays inside the mapping
        size_field = reader.word(pos + prev_size + layout.size_sz) if prev_size < mapping.end - pos else 0
    except MemoryReadError:
        return None
    chunk = pos + prev_size
    if not mmapped_header(layout, chunk, prev_size, size_field, mapping.end):
        return None
    end = pos + mmapped_span(layout, prev_size, size_field & ~SIZE_BITS)
    if prev_size == lead:
        chunk, prev_size, size_field = _memaligned(reader, layout, chunk, prev_size, size_field)
    return MmappedChunk(chunk, chunk + layout.header_size, prev_size, size_field, pos, end, mapping.start,
                        mapping.end)


def _memaligned(reader: Reader, layout: GlibcLayout, chunk: int, lead: int,
                size_field: int) -> Tuple[int, int, int]:
    """memalign on an mmapped chunk moves the chunk up inside its mapping and leaves the old
    header where it was: the real one says prev_size = its offset, size = the rest.  Looked for
    in the first MEMALIGN_SEARCH bytes; (chunk, prev_size, size field) of the one to show."""
    S, size = layout.size_sz, size_field & ~SIZE_BITS
    length = min(size - layout.minsize, MEMALIGN_SEARCH)
    try:
        words = reader.unpacker(length // S).unpack(reader.read(chunk, length)) if length > 0 else ()
    except MemoryReadError:
        return chunk, lead, size_field
    step = layout.malloc_alignment // S
    for i in range(step, len(words) - 1, step):
        off = i * S
        if words[i] == lead + off and words[i + 1] == (size - off) | IS_MMAPPED:
            return chunk + off, lead + off, words[i + 1]
    return chunk, lead, size_field


def _searched(mappings: Sequence[Mapping], skip: Sequence[Tuple[int, int]]) -> List[Mapping]:
    """The mappings that can hold mmapped chunks: anonymous (no file, no kernel name such as
    [heap] or [stack]), readable, not starting inside a `skip` range; in address order."""
    return [m for m in sorted(mappings, key=lambda m: m.start)
            if not m.path and m.readable and not any(lo <= m.start < hi for lo, hi in skip)]


def scan(reader: Reader, layout: GlibcLayout, mappings: Sequence[Mapping],
         skip: Sequence[Tuple[int, int]] = ()) -> Tuple[List[MmappedChunk], List[Mapping]]:
    """Mmapped chunks in the anonymous `mappings`, in address order, and the mappings that
    could not be read (a core file may lack them).  `skip`: [start, end) ranges known to be
    something else (arena heaps)."""
    chunks: List[MmappedChunk] = []
    unreadable: List[Mapping] = []
    for m in _searched(mappings, skip):
        if not reader.readable(m.start):
            unreadable.append(m)
            continue
        chunks += scan_mapping(reader, layout, m)
    return chunks, unreadable


@dataclass
class PageScan:
    """What the page scan did: it runs only when the chunks at mapping starts do not add up."""

    scanned: int  # bytes of anonymous memory read
    found: int  # chunks it added
    complete: bool  # False: it stopped at PAGE_SCAN_BUDGET with memory left unread


def chunk_bytes(chunks: Sequence[MmappedChunk]) -> int:
    """What mp_.mmapped_mem counts for these chunks: their whole mappings."""
    return sum(c.mapping_end - c.mapping_start for c in chunks)


def find_all(reader: Reader, layout: GlibcLayout, mappings: Sequence[Mapping], skip: Sequence[Tuple[int, int]],
             n_mmaps: int, mmapped_mem: int,
             budget: int = PAGE_SCAN_BUDGET) -> Tuple[List[MmappedChunk], List[Mapping], Optional[PageScan]]:
    """Every mmapped chunk that can be found: first the chains at mapping starts (cheap); then,
    while they do not add up to glibc's n_mmaps and mmapped_mem, every page start of the
    anonymous mappings outside the chunks already found.  The PageScan is None when the
    first pass sufficed."""
    chunks, unreadable = scan(reader, layout, mappings, skip)
    if len(chunks) == n_mmaps and chunk_bytes(chunks) == mmapped_mem:
        return chunks, unreadable, None
    bad = {(m.start, m.end) for m in unreadable}
    known = sorted([(c.mapping_start, c.mapping_end) for c in chunks] + list(skip))
    found: List[MmappedChunk] = []
    scanned, complete = 0, True
    for m in _searched(mappings, skip):
        if (m.start, m.end) in bad:
            continue
        for lo, hi in _gaps(m.start, m.end, known):
            more, read, done = _scan_pages(reader, layout, m, lo, hi, budget - scanned,
                                           n_mmaps - len(chunks) - len(found))
            found += more
            scanned += read
            if not done:
                complete = False
                break
            if len(chunks) + len(found) >= n_mmaps:
                break
        if not complete or len(chunks) + len(found) >= n_mmaps:
            break
    chunks = sorted(chunks + found, key=lambda c: c.address)
    return chunks, unreadable, PageScan(scanned, len(found), complete)


def _gaps(start: int, end: int, taken: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """The parts of [start, end) outside the sorted `taken` ranges."""
    out, pos = [], start
    for lo, hi in taken:
        if hi <= pos or lo >= end:
            continue
        if lo > pos:
            out.append((pos, lo))
        pos = max(pos, hi)
    if pos < end:
        out.append((pos, end))
    return out


def _scan_pages(reader: Reader, layout: GlibcLayout, mapping: Mapping, start: int, end: int, budget: int,
                wanted: int) -> Tuple[List[MmappedChunk], int, bool]:
    """Chunks whose mapping starts on a page in [start, end): (chunks, bytes read, whether the
    range was covered within `budget`).  Blocks are read straight from memory (not cached: most
    of it is not malloc's) and only the words at each page's header position are looked at;
    a page whose words could be a header is then checked whole by chunk_at_page."""
    S = layout.size_sz
    pair = reader.unpacker(2)
    found: List[MmappedChunk] = []
    read = 0
    pos = (start + PAGE - 1) // PAGE * PAGE
    lead = layout.first_chunk(pos) - pos  # the same on every page
    while pos < end and len(found) < wanted:
        length = min(PAGE_SCAN_BLOCK, end - pos)
        if read + length > budget:
            return found, read, False
        try:
            data = reader.memory.read(pos, length)
        except MemoryReadError:
            pos += length  # a hole (a core file's): nothing to find there
            continue
        read += length
        nxt, off = pos + length, 0
        while off + lead + 2 * S <= length and len(found) < wanted:
            prev_size, size_field = pair.unpack_from(data, off + lead)
            if prev_size == lead and size_field & (IS_MMAPPED | NON_MAIN_ARENA) == IS_MMAPPED:
                chunk = chunk_at_page(reader, layout, pos + off, mapping)
                if chunk is not None and chunk.mapping_end <= end:
                    found.append(chunk)
                    # its inside is the program's data: go on after it, in this block if it ends here
                    nxt = max(nxt, chunk.mapping_end)
                    off = chunk.mapping_end - pos
                    continue
            off += PAGE
        pos = nxt
    return found, read, True


def core_segments(data: bytes) -> List[Mapping]:
    """The PT_LOAD segments of an ELF core file (`data` holds its header and program headers),
    as mappings: a core has one per mapping of the process."""
    # A mapping the core did not save (coredump_filter, gcore's choice) keeps its segment
    # with fewer bytes in the file than in memory; gdb reads the rest as zeros.
    return [Mapping(h.vaddr, h.vaddr + h.memsz, "", bool(h.flags & PF_R),
                    h.vaddr + h.filesz if h.filesz < h.memsz else None, bool(h.flags & PF_W))
            for h in program_headers(data) if h.type == PT_LOAD and h.memsz]


def mapping_of(mappings: Sequence[Mapping], address: int) -> Optional[Mapping]:
    return next((m for m in mappings if m.start <= address < m.end), None)
