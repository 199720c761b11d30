"""Finding malloc's state without debug symbols, from memory alone.

Nothing here depends on where a particular glibc build put its variables: each structure is
recognised by its own consistency (an arena's empty bins point at themselves and its `next`
ring comes back to it; mp_.sbrk_base is where the main heap starts; a thread's TCB points at
itself; a tcache pointer leads to a chunk of exactly sizeof(tcache_perthread_struct)).
Every search runs over a bounded list of spans.  gdb-free: locate.py supplies the spans.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from . import mappings, model
from .errors import HeapError, MemoryReadError
from .layouts import FEATURES, NBINS, GlibcLayout, Version, layout_for
from .memory import Reader

Span = Tuple[int, int]  # [start, end)

BANNER = re.compile(rb"release version (\d+)\.(\d+)")  # libc's "GNU C Library ... release version 2.36."

MAX_SCAN = 64 << 20  # bytes any one search may read in all
MIN_EMPTY_BINS = 16  # self-pointing bins needed before an address is worth validating
TLS_WINDOW = 64 << 10  # how far below the thread pointer the static TLS blocks are searched
TLS_NEIGHBOURS = 0x100  # malloc's TLS variables (thread_arena, tcache) lie this close together
PAGE = 4096
TCB_SCAN = 128 << 10  # bytes searched at each end of a mapping for a thread's TCB
PTHREAD_TID_WINDOW = 0x800  # struct pthread's tid lies within this many bytes of its start


@dataclass
class Candidate:
    address: int
    score: int  # how many independent checks it passed (higher is surer)


def _words(reader: Reader, span: Span) -> Tuple[int, Tuple[int, ...]]:
    """The span's words, starting at its first word-aligned address (none if unreadable)."""
    S = reader.size_sz
    start = (span[0] + S - 1) // S * S
    count = max(0, (span[1] - start) // S)
    try:
        return start, reader.words(start, count)
    except MemoryReadError:
        return start, ()


def _pieces(reader: Reader, spans: Iterable[Span]) -> Iterator[Tuple[int, Tuple[int, ...]]]:
    """(base, words) for the readable parts of bounded spans: a span that fails as a whole
    (a hole in a core file, two mappings) is retried page by page."""
    for span in _bounded(spans):
        base, words = _words(reader, span)
        if words or span[1] - span[0] < 2 * PAGE:
            yield base, words
            continue
        for page in range(span[0] // PAGE * PAGE, span[1], PAGE):
            yield _words(reader, (max(page, span[0]), min(page + PAGE, span[1])))


def _bounded(spans: Iterable[Span]) -> List[Span]:
    out, total = [], 0
    for start, end in spans:
        if end <= start:
            continue
        end = min(end, start + MAX_SCAN - total)
        if end <= start:
            break
        out.append((start, end))
        total += end - start
    return out


# -- main_arena ---------------------------------------------------------------------------------

def arena_candidates(reader: Reader, layout: GlibcLayout, spans: Sequence[Span]) -> List[Candidate]:
    """Addresses in `spans` holding a malloc_state that is consistent with itself, best first.

    An initialised arena's empty bins have fd == bk == bin_at(i), the bin's own address; each
    such pair votes for the arena start it implies, and the few addresses with many votes are
    then validated whole (see valid_arena).
    """
    S = reader.size_sz
    bins_off = layout.malloc_state.offset("bins")
    votes: Counter[int] = Counter()
    for base, words in _pieces(reader, spans):
        n = len(words)
        for k in range(n - 1):
            w = words[k]
            # An empty bin: both links hold the address two words before the fd field.
            if w == base + (k - 2) * S and words[k + 1] == w:
                field = base + k * S
                for i in range(1, NBINS):
                    votes[field - bins_off - (i - 1) * 2 * S] += 1
    found: List[Candidate] = []
    for address, count in votes.most_common():
        if count < MIN_EMPTY_BINS or len(found) >= 8:
            break
        score = valid_arena(reader, layout, address)
        if score:
            found.append(Candidate(address, score))
    found.sort(key=lambda c: -c.score)
    return found


def pristine_arena_candidates(reader: Reader, layout: GlibcLayout, spans: Sequence[Span]) -> List[int]:
    """main_arena before the first malloc: only its static initialiser has run, so `next`
    points at itself, attached_threads is 1 and top, bins and system_mem are zero."""
    S = reader.size_sz
    ms = layout.malloc_state
    next_off = ms.offset("next")
    found = []
    for base, words in _pieces(reader, spans):
        for k, w in enumerate(words):
            address = base + k * S - next_off
            if w != address or address < base:
                continue
            try:
                state = model.read_malloc_state(reader, layout, address)
            except MemoryReadError:
                continue
            if (state.attached_threads == 1 and state.top == 0 and state.system_mem == 0
                    and not any(state.bins) and not any(state.fastbinsY)):
                found.append(address)
    return found


def pristine_mp_candidates(reader: Reader, layout: GlibcLayout, spans: Sequence[Span]) -> List[int]:
    """mp_ before the first malloc: its static initialiser's defaults (128 KiB thresholds and
    top_pad, 65536 mmaps at most) and no sbrk_base yet."""
    S = reader.size_sz
    mp = layout.malloc_par
    default = 128 * 1024
    found = []
    for base, words in _pieces(reader, spans):
        for k in range(len(words) - 2):
            if words[k] == default and words[k + 1] == default and words[k + 2] == default:
                address = base + k * S - mp.offset("trim_threshold")
                try:
                    s = model.StructBytes(reader, mp, address)
                except MemoryReadError:
                    continue
                if s.get("n_mmaps_max") == 65536 and s.get("sbrk_base") == 0 and s.get("n_mmaps") == 0:
                    found.append(address)
    return found


def valid_arena(reader: Reader, layout: GlibcLayout, address: int) -> int:
    """A score > 0 when the malloc_state at `address` is self-consistent, else 0.

    Checks: every bin is empty (pointing at itself) or points outside the arena at an
    aligned, readable chunk; top is aligned and readable; the `next` ring comes back (or
    reaches an arena the core file lacks: `heap arenas` then says the list is cut there).
    """
    try:
        state = model.read_malloc_state(reader, layout, address)
    except MemoryReadError:
        return 0
    S = layout.size_sz
    amask = layout.malloc_alignment - 1
    end = address + layout.malloc_state.size
    empty = 0
    for i in range(1, NBINS):
        fd, bk = state.bins[2 * (i - 1)], state.bins[2 * (i - 1) + 1]
        own = model.bin_at(layout, address, i)
        if fd == own and bk == own:
            empty += 1
            continue
        for link in (fd, bk):
            if link == own:
                continue
            if address <= link < end or link % S or not reader.readable(link):
                return 0
    if empty < MIN_EMPTY_BINS:
        return 0
    initial_top = model.bin_at(layout, address, 1)  # before the arena's first sbrk/mmap
    if state.top != initial_top and (state.top == 0 or (state.top + layout.header_size) & amask
                                     or not reader.readable(state.top)):
        return 0
    for fb in state.fastbinsY:
        if fb and (fb % S or not reader.readable(fb)):
            return 0
    # The ring of arenas returns to this one, or runs into an arena a core file lacks.
    seen = {address}
    nxt = state.next
    for _ in range(model.MAX_ARENAS):
        if nxt == address or (not nxt % S and reader.missing(nxt)):
            break
        if nxt in seen or nxt == 0 or not reader.readable(nxt):
            return 0
        seen.add(nxt)
        try:
            nxt = model.read_malloc_state(reader, layout, nxt).next
        except MemoryReadError:
            return 0
    else:
        return 0
    if state.system_mem > state.max_system_mem:
        return 0
    return empty + len(seen)


# -- mp_ ------------------------------------------------------------------------------------

def mp_candidates(reader: Reader, layout: GlibcLayout, spans: Sequence[Span],
                  main_arena: int) -> List[Candidate]:
    """malloc_par candidates: mp_.sbrk_base is where the main heap starts, so top lies in
    [sbrk_base, sbrk_base + system_mem) (unless the arena fell back to mmap: NONCONTIGUOUS_BIT),
    and the other fields keep their own invariants."""
    try:
        state = model.read_malloc_state(reader, layout, main_arena)
    except MemoryReadError:
        return []
    if not model.heap_initialised(layout, state):
        return []
    S = layout.size_sz
    sbrk_off = layout.malloc_par.offset("sbrk_base")
    arena_end = main_arena + layout.malloc_state.size
    # sbrk_base is the lowest address of the main heap: no chunk the arena links to is below it.
    own = {model.bin_at(layout, main_arena, i) for i in range(1, NBINS)}
    lowest = min([x for x in state.bins + state.fastbinsY if x and x not in own] + [state.top])
    noncontiguous = state.flags & model.NONCONTIGUOUS_BIT
    found = []
    for base, words in _pieces(reader, spans):
        for k, w in enumerate(words):
            if w and w <= lowest and (noncontiguous or w <= state.top < w + state.system_mem):
                address = base + k * S - sbrk_off
                if address < arena_end and main_arena < address + layout.malloc_par.size:
                    continue  # a window onto main_arena's own fields
                score = valid_mp(reader, layout, address, state)
                if score:
                    found.append(Candidate(address, score))
    found.sort(key=lambda c: -c.score)
    return found


def valid_mp(reader: Reader, layout: GlibcLayout, address: int, state: model.MallocState) -> int:
    try:
        s = model.StructBytes(reader, layout.malloc_par, address)
    except MemoryReadError:
        return 0
    get = s.get
    if not (get("n_mmaps") <= get("max_n_mmaps") and get("mmapped_mem") <= get("max_mmapped_mem")):
        return 0
    if get("n_mmaps_max") > 1 << 24 or get("no_dyn_threshold") > 1 or get("arena_test") == 0:
        return 0
    if get("mmapped_mem") % 4096 or get("mmap_threshold") > 1 << 40:
        return 0
    if get("arena_test") > 1 << 16 or get("arena_max") > 1 << 16:  # numbers of arenas
        return 0
    for name in ("thp_pagesize", "hp_pagesize"):  # 0 or a page size (2.35+)
        if s.has(name) and get(name) and (get(name) & (get(name) - 1) or get(name) < 4096):
            return 0
    # Defaults (a tunable or mallopt may change them): NARENAS_FROM_NCORES(1) arenas to test,
    # no arena_max, and trim_threshold twice a dynamic mmap_threshold or both 128 KiB.
    score = 1 + (get("arena_test") == (8 if layout.size_sz == 8 else 2)) + (get("arena_max") == 0)
    score += get("trim_threshold") in (128 * 1024, 2 * get("mmap_threshold"))
    if s.has("tcache_count"):
        bins = get("tcache_small_bins" if s.has("tcache_small_bins") else "tcache_bins")
        if bins > 1024 or get("tcache_count") > 0xFFFF:
            return 0
        score += bins == layout.features.tcache_small_bins
    # The first chunk of the main heap says PREV_INUSE (nothing precedes it); it is often the
    # main thread's tcache struct (see GlibcLayout.tcache_often_heads_main_heap).
    first = layout.first_chunk(get("sbrk_base"))
    try:
        size_field = reader.word(first + layout.size_sz)
    except MemoryReadError:
        return 0
    if first != state.top and not size_field & model.PREV_INUSE:
        return 0
    if layout.tcache_often_heads_main_heap and size_field & ~model.SIZE_BITS == layout.tcache_chunk_size:
        score += 3
    return score + (get("n_mmaps_max") == 65536) + (get("top_pad") == 128 * 1024)


def choose(kind: str, found: Sequence[Candidate], where: str, setting: str) -> int:
    """The one candidate to take: the only one, or one that passed clearly more checks;
    otherwise an error that lists them and names the setting that overrides the search."""
    if len(found) == 1 or (len(found) > 1 and found[0].score >= found[1].score + 2):
        return found[0].address
    if not found:
        raise HeapError(f"no {kind} found in {where}: the program may not use glibc's malloc, or not have "
                        f"called malloc yet; if you know the address, set heap {setting} ADDR")
    listed = ", ".join(f"{c.address:#x}" for c in found)
    raise HeapError(f"several {kind} candidates in {where} ({listed}); choose one with set heap {setting} ADDR")


# -- layouts when the version is unknown ----------------------------------------------------

def distinct_layouts(size_sz: int) -> List[GlibcLayout]:
    """One layout per row of the version table, newest first."""
    return [layout_for(version, size_sz) for version, _ in reversed(FEATURES)]


@dataclass
class Inferred:
    version: Version  # a row of the version table
    main_arena: int
    mp: int
    score: int


def infer_state(reader: Reader, size_sz: int, spans: Sequence[Span], main_arena: Optional[int] = None,
                mp: Optional[int] = None) -> List[Inferred]:
    """When the version is unknown (a static program): every (row, main_arena, mp_) that fits
    memory, best first.  Known addresses (ELF symbols) are checked rather than searched."""
    out = []
    for layout in distinct_layouts(size_sz):
        if main_arena is not None:
            arenas = [Candidate(main_arena, valid_arena(reader, layout, main_arena))]
        else:
            arenas = arena_candidates(reader, layout, spans)
        for a in arenas:
            if not a.score:
                continue
            try:
                state = model.read_malloc_state(reader, layout, a.address)
            except MemoryReadError:
                continue
            if mp is not None:
                mps = [Candidate(mp, valid_mp(reader, layout, mp, state))]
            else:
                mps = mp_candidates(reader, layout, spans, a.address)
            out += [Inferred(layout.version, a.address, m.address, a.score + m.score) for m in mps if m.score]
    out.sort(key=lambda i: (-i.score, tuple(-x for x in i.version)))
    return out


def narrow_versions(reader: Reader, size_sz: int, versions: Sequence[Version], sbrk_base: int) -> List[Version]:
    """Tell apart rows whose arenas look alike by the main heap's first chunk, which is often
    the main thread's tcache_perthread_struct (GlibcLayout.tcache_often_heads_main_heap): its
    size gives the counts' width and the bin count, and its chains' last links say whether
    safe-linking is on."""
    if not versions or not sbrk_base:
        return list(versions)
    layouts = [layout_for(v, size_sz) for v in versions]
    first = layouts[0].first_chunk(sbrk_base)
    try:
        size = reader.word(first + size_sz) & ~model.SIZE_BITS
    except MemoryReadError:
        return list(versions)
    sized = [L for L in layouts if L.tcache_often_heads_main_heap and L.tcache_chunk_size == size]
    if not sized:
        return list(versions)
    tcache = first + layouts[0].header_size
    kept = [L for L in sized if _chains_end_cleanly(reader, L, tcache)] or sized
    keyed = _entries_keyed(reader, kept[0], tcache)  # 2.29-2.33: e->key = the tcache struct
    if keyed is not None:
        kept = [L for L in kept if L.tcache_key_is_struct == keyed] or kept
    return [L.version for L in kept]


def _entries_keyed(reader: Reader, layout: GlibcLayout, tcache: int) -> Optional[bool]:
    """Whether the tcache entries' key words hold the tcache struct's address (None: no entry)."""
    try:
        heads = [h for h in model.StructBytes(reader, layout.tcache_perthread, tcache).array("entries") if h]
        keys = [reader.word(h + layout.size_sz) for h in heads]
    except MemoryReadError:
        return None
    if not keys:
        return None
    return all(k == tcache for k in keys)


def _chains_end_cleanly(reader: Reader, layout: GlibcLayout, tcache: int) -> bool:
    """Each non-empty tcache bin, decoded the layout's way, ends in a null link within a few
    steps without leaving readable memory."""
    try:
        s = model.StructBytes(reader, layout.tcache_perthread, tcache)
    except MemoryReadError:
        return False
    for head in s.array("entries"):
        entry, steps = head, 0
        while entry and steps < 64:
            if entry % layout.malloc_alignment or not reader.readable(entry):
                return False
            try:
                entry = layout.reveal_ptr(entry, reader.word(entry))
            except MemoryReadError:
                return False
            steps += 1
        if entry:
            return False
    return True


# -- threads: TCB, tcache, thread_arena -----------------------------------------------------

def thread_pointers(reader: Reader, spans: Sequence[Span], tids: Iterable[int]) -> Dict[int, List[int]]:
    """Thread pointers by thread id: a TCB starts with tcbhead_t {tcb, dtv, self}, tcb == self
    == its own address, and struct pthread (which begins with it) holds the thread's tid."""
    S = reader.size_sz
    wanted = set(tids)
    found: Dict[int, List[int]] = {}
    for base, words in _pieces(reader, spans):
        for k in range(len(words) - 2):
            a = base + k * S
            if words[k] == a and words[k + 2] == a and words[k + 1] and words[k + 1] % S == 0:
                ids = _tids_near(reader, a) & wanted
                for tid in ids:
                    if a not in found.setdefault(tid, []):  # spans may overlap
                        found[tid].append(a)
    return found


def _tids_near(reader: Reader, tcb: int) -> Set[int]:
    """The 32-bit words after a TCB candidate (struct pthread's tid among them), up to the end
    of readable memory (a thread's TCB can sit in the last page of its stack mapping)."""
    for length in (PTHREAD_TID_WINDOW, (tcb // PAGE + 1) * PAGE - tcb):
        try:
            return set(reader.array(tcb, length // 4, 4))
        except MemoryReadError:
            continue
    return set()


def tls_slots(reader: Reader, tp: int, low: int) -> Tuple[int, Tuple[int, ...]]:
    """The words of the static TLS area below the thread pointer (variant II: TLS blocks sit
    just under the TCB), down to `low` at most."""
    start = max(low, tp - TLS_WINDOW)
    return _words(reader, (start, tp))


def tls_arena(reader: Reader, tp: int, low: int, arenas: Sequence[int]) -> Tuple[Optional[int], Optional[int]]:
    """(thread_arena, its slot): the TLS word nearest the TCB holding an arena's address (the
    thread's stack lies below the static TLS blocks, so nearer means TLS)."""
    base, words = tls_slots(reader, tp, low)
    wanted = set(arenas)
    for k in range(len(words) - 1, -1, -1):
        if words[k] in wanted:
            return words[k], base + k * reader.size_sz
    return None, None


def tls_tcache(reader: Reader, layout: GlibcLayout, arena_slot: int, heaps: Sequence[Span]) -> Optional[int]:
    """tcache: malloc's TLS variables sit together, so the word near thread_arena's slot that
    points at a chunk of sizeof(tcache_perthread_struct) inside one of `heaps`.  (glibc
    2.43's static dummy is in no heap: a thread that has not freed yet has no tcache here.)"""
    want = layout.tcache_chunk_size
    S, H = layout.size_sz, layout.header_size
    base, words = _words(reader, (arena_slot - TLS_NEIGHBOURS, arena_slot + TLS_NEIGHBOURS))
    found = []
    for k, w in enumerate(words):
        chunk = w - H
        if w % layout.malloc_alignment or not any(s <= chunk < e for s, e in heaps):
            continue
        try:
            size = reader.word(chunk + S) & ~model.SIZE_BITS
        except MemoryReadError:
            continue
        if size == want:
            found.append((abs(base + k * S - arena_slot), w))
    return min(found)[1] if found else None


# -- the version -------------------------------------------------------------------------------

def banner_version(reader: Reader, maps: Sequence[mappings.Mapping], libc_path: str) -> Optional[Version]:
    """libc's banner read from its mapped read-only data, when its file is not at hand (a core
    file from another machine)."""
    real = os.path.realpath(libc_path)
    budget = 8 << 20
    for m in maps:
        if m.writable or not m.path or os.path.realpath(m.path) != real or m.end - m.start > budget:
            continue
        budget -= m.end - m.start
        try:
            found = BANNER.search(reader.read(m.start, m.end - m.start))
        except MemoryReadError:
            continue
        if found:
            return int(found.group(1)), int(found.group(2))
    return None
