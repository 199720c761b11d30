"""glibc's malloc abort messages: one table, each message named, with the releases whose
malloc/malloc.c prints it and the code paths that check it.

Read from glibc's git tags glibc-2.26 .. glibc-2.42 and from master of 2026-01-20 (the 2.43
development tree; 2.43 and 2.44 are taken to print what it prints).  `last` is the last release
that prints the message; None means it is still printed.  A path names the malloc.c function
(or the step inside it) whose check prints the message; the callers that reach it follow
after "<-".  Everything that predicts what glibc would print (heap check today; try-free,
try-malloc and trace later) takes its text from here: `text(NAME, version)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

Version = Tuple[int, int]


@dataclass(frozen=True)
class Message:
    name: str
    text: str
    first: Version
    last: Optional[Version]
    paths: Tuple[str, ...]

    def printed_by(self, version: Version) -> bool:
        return self.first <= version and (self.last is None or version <= self.last)


_M = Message
_MALLOC = "_int_malloc <- malloc, calloc, realloc, memalign"
_FREE = "_int_free (2.26-2.38), _int_free_merge_chunk (2.39+) <- free, realloc"
MESSAGES: Tuple[Message, ...] = (
    # -- malloc: tcache_get ------------------------------------------------------------------
    _M("TCACHE_UNALIGNED", "malloc(): unaligned tcache chunk detected", (2, 32), None,
       ("tcache_get (2.32-2.37), tcache_get_n (2.38+): the tcache bin's head <- malloc",)),
    # -- malloc: the fast bins (_int_malloc) -------------------------------------------------
    _M("FASTBIN_UNALIGNED_REMOVE", "malloc(): unaligned fastbin chunk detected", (2, 32), (2, 42),
       (f"REMOVE_FB: the taken chunk's fd, when not SINGLE_THREAD_P <- {_MALLOC}",)),
    _M("FASTBIN_UNALIGNED_VICTIM", "malloc(): unaligned fastbin chunk detected 2", (2, 32), (2, 42),
       (f"fast bin: the bin's head (victim) <- {_MALLOC}",)),
    _M("FASTBIN_UNALIGNED_STASH", "malloc(): unaligned fastbin chunk detected 3", (2, 32), (2, 42),
       (f"fast bin: each chunk stashed into the tcache after the victim <- {_MALLOC}",)),
    _M("FASTBIN_VICTIM_SIZE", "malloc(): memory corruption (fast)", (2, 26), (2, 42),
       (f"fast bin: the victim's fastbin_index (not the stashed chunks') <- {_MALLOC}",)),
    _M("FASTBIN_STASH_SIZE", "malloc(): chunk size mismatch in fastbin", (2, 42), (2, 42),
       (f"fast bin: each stashed chunk's csize2tidx <- {_MALLOC}",)),
    # -- malloc: small bins --------------------------------------------------------------------
    _M("SMALLBIN_DLL", "malloc(): smallbin double linked list corrupted", (2, 26), None,
       (f"small bin: the victim (last(bin)): bck->fd != victim; the stashed chunks are not checked "
        f"<- {_MALLOC}",)),
    # -- malloc: the unsorted bin loop, in the order of its checks ------------------------------
    _M("UNSORTED_MEMORY_CORRUPTION", "malloc(): memory corruption", (2, 26), (2, 28),
       (f"unsorted loop: the victim's size <= 2*SIZE_SZ or > system_mem <- {_MALLOC}",)),
    _M("UNSORTED_INVALID_SIZE", "malloc(): invalid size (unsorted)", (2, 29), None,
       (f"unsorted loop, check 1: the victim's size <= CHUNK_HDR_SZ or > system_mem <- {_MALLOC}",)),
    _M("UNSORTED_INVALID_NEXT_SIZE", "malloc(): invalid next size (unsorted)", (2, 29), None,
       (f"unsorted loop, check 2: the next chunk's size < CHUNK_HDR_SZ or > system_mem <- {_MALLOC}",)),
    _M("UNSORTED_PREV_SIZE", "malloc(): mismatching next->prev_size (unsorted)", (2, 29), None,
       (f"unsorted loop, check 3: the next chunk's prev_size != the victim's size <- {_MALLOC}",)),
    _M("UNSORTED_DLL", "malloc(): unsorted double linked list corrupted", (2, 29), None,
       (f"unsorted loop, check 4: victim->bk->fd != victim or victim->fd != the bin <- {_MALLOC}",)),
    _M("UNSORTED_NEXT_PREV_INUSE", "malloc(): invalid next->prev_inuse (unsorted)", (2, 29), None,
       (f"unsorted loop, check 5: the next chunk's PREV_INUSE is set <- {_MALLOC}",)),
    _M("UNSORTED_REMOVE", "malloc(): corrupted unsorted chunks 3", (2, 28), (2, 37),
       (f"unsorted loop: removing the victim, bck->fd != victim (after check 4 from 2.29) <- {_MALLOC}",)),
    _M("LARGEBIN_NEXTSIZE", "malloc(): largebin double linked list corrupted (nextsize)", (2, 30), None,
       (f"unsorted loop, sorting the victim into a large bin: fwd->bk_nextsize->fd_nextsize != fwd "
        f"<- {_MALLOC}",)),
    _M("LARGEBIN_BK", "malloc(): largebin double linked list corrupted (bk)", (2, 30), None,
       (f"unsorted loop, sorting the victim into a large bin: fwd->bk->fd != fwd <- {_MALLOC}",)),
    # -- malloc: splitting a chunk, top ----------------------------------------------------------
    _M("UNSORTED_INSERT_MALLOC", "malloc(): corrupted unsorted chunks", (2, 26), None,
       (f"large bin or exact-fit split: the remainder goes to the unsorted bin, whose first "
        f"chunk's bk must be the bin <- {_MALLOC}",)),
    _M("UNSORTED_INSERT_MALLOC_2", "malloc(): corrupted unsorted chunks 2", (2, 26), None,
       (f"binmap search split: the remainder goes to the unsorted bin, whose first chunk's bk "
        f"must be the bin <- {_MALLOC}",)),
    _M("TOP_SIZE", "malloc(): corrupted top size", (2, 29), None,
       (f"use_top: top's size > system_mem <- {_MALLOC}",)),
    # -- unlink_chunk (the unlink macro up to 2.28) --------------------------------------------
    _M("UNLINK_PREV_SIZE", "corrupted size vs. prev_size", (2, 26), None,
       ("unlink_chunk: chunksize(p) != prev_size(next_chunk(p)) <- _int_malloc (large bin, binmap "
        "search), free's consolidation, malloc_consolidate",)),
    _M("UNLINK_DLL", "corrupted double-linked list", (2, 26), None,
       ("unlink_chunk: p->fd->bk != p or p->bk->fd != p <- the same",)),
    _M("UNLINK_NEXTSIZE", "corrupted double-linked list (not small)", (2, 26), None,
       ("unlink_chunk: a large chunk with fd_nextsize set: its nextsize neighbours do not point "
        "back <- the same",)),
    # -- malloc_consolidate (until 2.42: fastbins) -----------------------------------------------
    _M("CONSOLIDATE_UNALIGNED", "malloc_consolidate(): unaligned fastbin chunk detected", (2, 32), (2, 42),
       ("malloc_consolidate: each fastbin chunk <- _int_malloc (large request), free of a large "
        "chunk, mallopt, mallinfo",)),
    _M("CONSOLIDATE_SIZE", "malloc_consolidate(): invalid chunk size", (2, 27), (2, 42),
       ("malloc_consolidate: a fastbin chunk whose size is not its bin's <- the same",)),
    _M("CONSOLIDATE_PREV_SIZE", "corrupted size vs. prev_size in fastbins", (2, 29), (2, 42),
       ("malloc_consolidate: backward merge, the chunk before's size != prev_size <- the same",)),
    # -- free ------------------------------------------------------------------------------------
    _M("FREE_INVALID_POINTER", "free(): invalid pointer", (2, 26), None,
       ("_int_free (2.26-2.40), _int_free_check (2.41): p > -size or p misaligned; __libc_free "
        "(2.42+): p misaligned <- free",)),
    _M("FREE_INVALID_SIZE", "free(): invalid size", (2, 26), None,
       ("_int_free (2.26-2.40), _int_free_check (2.41): size < MINSIZE or misaligned, before the "
        "tcache; __libc_free (2.42+): p + size - MINSIZE overflows, after the tcache <- free",)),
    _M("TCACHE_DOUBLE_FREE", "free(): double free detected in tcache 2", (2, 29), None,
       ("_int_free (2.29-2.40), tcache_double_free_verify (2.41+): the key matches and the chunk is "
        "in its tcache bin <- free",)),
    _M("TCACHE_FREE_UNALIGNED", "free(): unaligned chunk detected in tcache 2", (2, 32), None,
       ("the tcache double-free walk: a misaligned entry <- free",)),
    _M("TCACHE_FREE_TOO_MANY", "free(): too many chunks detected in tcache", (2, 33), None,
       ("the tcache double-free walk: more entries than the count <- free",)),
    _M("FREE_FAST_NEXT_SIZE", "free(): invalid next size (fast)", (2, 26), (2, 42),
       ("_int_free (2.26-2.40), _int_free_chunk (2.41-2.42), fast path: the next chunk's size "
        "<= CHUNK_HDR_SZ or >= system_mem <- free",)),
    _M("FREE_FASTTOP", "double free or corruption (fasttop)", (2, 26), (2, 42),
       ("the same fast path: the chunk is already the fast bin's head <- free",)),
    _M("FREE_FAST_ENTRY", "invalid fastbin entry (free)", (2, 26), (2, 42),
       ("the same fast path: the old head's size is not the bin's <- free",)),
    _M("FREE_TOP", "double free or corruption (top)", (2, 26), None, (f"p is top <- {_FREE}",)),
    _M("FREE_OUT", "double free or corruption (out)", (2, 26), None,
       (f"contiguous arena: the next chunk lies past top's end <- {_FREE}",)),
    _M("FREE_PREV", "double free or corruption (!prev)", (2, 26), None,
       (f"the next chunk's PREV_INUSE is clear <- {_FREE}",)),
    _M("FREE_NEXT_SIZE", "free(): invalid next size (normal)", (2, 26), None,
       (f"the next chunk's size <= CHUNK_HDR_SZ or >= system_mem <- {_FREE}",)),
    _M("FREE_CONSOLIDATE_PREV_SIZE", "corrupted size vs. prev_size while consolidating", (2, 29), None,
       (f"backward merge: the chunk before's size != prev_size <- {_FREE}",)),
    _M("UNSORTED_INSERT_FREE", "free(): corrupted unsorted chunks", (2, 26), None,
       ("_int_free (2.26-2.38), _int_free_create_chunk (2.39+): the unsorted bin's first chunk's bk "
        "is not the bin <- free",)),
    _M("SMALLBIN_INSERT_FREE", "free(): chunks in smallbin corrupted", (2, 41), None,
       ("_int_free_create_chunk: a small chunk goes straight to its small bin, whose first chunk's "
        "bk is not the bin <- free",)),
    # -- mmapped chunks, realloc ---------------------------------------------------------------
    _M("MUNMAP_INVALID_POINTER", "munmap_chunk(): invalid pointer", (2, 26), None,
       ("munmap_chunk: block or size not page-aligned <- free, realloc of an mmapped chunk",)),
    _M("MREMAP_INVALID_POINTER", "mremap_chunk(): invalid pointer", (2, 29), None,
       ("mremap_chunk: block or size not page-aligned <- realloc of an mmapped chunk",)),
    _M("REALLOC_INVALID_POINTER", "realloc(): invalid pointer", (2, 26), None,
       ("__libc_realloc: p > -size or p misaligned <- realloc",)),
    _M("REALLOC_OLD_SIZE", "realloc(): invalid old size", (2, 26), None,
       ("_int_realloc: oldsize <= CHUNK_HDR_SZ or >= system_mem <- realloc",)),
    _M("REALLOC_NEXT_SIZE", "realloc(): invalid next size", (2, 26), None,
       ("_int_realloc: the next chunk's size <= CHUNK_HDR_SZ or >= system_mem <- realloc",)),
    # -- elsewhere -------------------------------------------------------------------------------
    _M("TCACHE_SHUTDOWN_UNALIGNED", "tcache_thread_shutdown(): unaligned tcache chunk detected", (2, 32), None,
       ("tcache_thread_shutdown: each tcache entry <- a thread's exit",)),
    _M("MEMALIGN_UNALIGNED", "_int_memalign(): unaligned chunk detected", (2, 38), (2, 38),
       ("chunk_ok_for_memalign: a tcache entry <- memalign, aligned_alloc, posix_memalign",)),
    _M("MALLINFO_UNALIGNED", "int_mallinfo(): unaligned fastbin chunk detected", (2, 32), (2, 42),
       ("int_mallinfo: each fastbin chunk <- mallinfo, mallinfo2, malloc_stats",)),
    _M("MALLOC_INFO_UNALIGNED", "__malloc_info(): unaligned fastbin chunk detected", (2, 32), (2, 42),
       ("__malloc_info: each fastbin chunk <- malloc_info",)),
    _M("SBRK_ADJUSTED", "break adjusted to free malloc space", (2, 26), None,
       ("sysmalloc: a foreign sbrk shrank the break below the heap <- _int_malloc's use of top",)),
)
TABLE: Dict[str, Message] = {m.name: m for m in MESSAGES}


def text(name: str, version: Version) -> Optional[str]:
    """The message `name` as glibc `version` prints it, or None if that glibc does not."""
    message = TABLE[name]
    return message.text if message.printed_by(version) else None


def first(version: Version, *names: str) -> Optional[str]:
    """Of checks made in this order, the text of the first that glibc `version` has."""
    return next((t for t in (text(n, version) for n in names) if t is not None), None)
