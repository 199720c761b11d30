"""gdb_heap for gdb scripts: each function returns what its command prints with --json, as
Python objects (dicts, lists, ints, strings, booleans, None), so a script never parses text.

    (gdb) source /path/to/gdb_heap/init.py
    (gdb) python
    import gdb_heap.api as heap
    free = [c for c in heap.chunks()["chunks"] if c["state"] == "free"]
    for problem in heap.check()["problems"]:
        print(hex(problem["address"]), problem["message"])
    end

The document is the command's own: the command's run() writes it, as for --json (shapes in
docs/commands.md), into the value returned instead of gdb's output.  A failure raises the
command's error, gdb.GdbError("heap: ...").  ADDR arguments take an int, a gdb.Value or a gdb
expression (a string, as at the prompt: "p", "(char *)p + 3", "&main_arena").
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import gdb  # type: ignore[import-not-found,unused-ignore]

from .commands.base import MADE, evaluate_address, reported

Address = Union[int, str, "gdb.Value"]


def _address(value: Address) -> str:
    """An address as the word the command reads: evaluated here, so any expression works."""
    if isinstance(value, int):
        return f"{value:#x}"
    with reported():
        return f"{evaluate_address(value if isinstance(value, str) else str(int(value))):#x}"


def _run(name: str, words: Sequence[str]) -> Any:
    command = MADE.get(name)
    if command is None:
        raise gdb.GdbError("heap: gdb_heap's commands are not loaded; source gdb_heap/init.py (or python "
                           "import gdb_heap.init) first")
    return command.document(" ".join(words))


def _arenas(arena: Optional[Address], all_arenas: bool) -> List[str]:
    return (["--arena", _address(arena)] if arena is not None else []) + (["--all-arenas"] if all_arenas else [])


def _valued(**options: Optional[Union[int, str]]) -> List[str]:
    """Keyword options as words: min_size=32 is --min-size 32 (None: not given)."""
    return [w for key, v in options.items() if v is not None for w in (f"--{key.rstrip('_').replace('_', '-')}",
                                                                        str(v))]


def overview() -> Any:
    """`heap --json`: glibc version, how malloc's state was found, every arena, counts."""
    return _run("heap", [])


def arenas() -> Any:
    """`heap arenas --json`: {"arenas": [...]}."""
    return _run("heap arenas", [])


def chunks(arena: Optional[Address] = None, all_arenas: bool = False, state: Optional[str] = None,
           bin: Optional[str] = None, min_size: Optional[int] = None, max_size: Optional[int] = None,
           from_: Optional[Address] = None, to: Optional[Address] = None, limit: Optional[int] = None,
           summary: bool = False) -> Any:
    """`heap chunks --json` with the same options (from_ and to are --from and --to; summary:
    --summary's document)."""
    bounds = _valued(**{"from": _address(from_) if from_ is not None else None,
                        "to": _address(to) if to is not None else None})
    return _run("heap chunks", _arenas(arena, all_arenas) + _valued(state=state, bin=bin, min_size=min_size,
                                                                    max_size=max_size, limit=limit)
                + bounds + (["--summary"] if summary else []))


def chunk(address: Address) -> Any:
    """`heap chunk ADDR --json`: one chunk in detail (ADDR: chunk, user pointer or inside)."""
    return _run("heap chunk", [_address(address)])


def bins(*kinds: str, arena: Optional[Address] = None, all_arenas: bool = False,
         all_threads: bool = False) -> Any:
    """`heap bins [KIND...] --json`: kinds among tcache, fast, unsorted, small, large."""
    return _run("heap bins", list(kinds) + _arenas(arena, all_arenas) + (["--all-threads"] if all_threads else []))


def top(arena: Optional[Address] = None, all_arenas: bool = False) -> Any:
    """`heap top --json`."""
    return _run("heap top", _arenas(arena, all_arenas))


def check(arena: Optional[Address] = None, all_arenas: bool = False) -> Any:
    """`heap check --json`: the problems found (never an error for them: the caller decides)."""
    return _run("heap check", _arenas(arena, all_arenas))


def mmapped() -> Any:
    """`heap mmapped --json`."""
    return _run("heap mmapped", [])


def where(address: Address) -> Any:
    """`heap where ADDR --json`: what the address is."""
    return _run("heap where", [_address(address)])


def trace(last: Optional[int] = None, thread: Optional[int] = None) -> Any:
    """`heap trace --json`: the malloc and free calls recorded since `heap trace start`."""
    return _run("heap trace", _valued(last=last, thread=thread))


def snapshots() -> Any:
    """`heap snapshots --json`: the snapshots taken with `heap snapshot [NAME]`."""
    return _run("heap snapshots", [])


def diff(a: Optional[str] = None, b: Optional[str] = None, arena: Optional[Address] = None,
         all_arenas: bool = False) -> Any:
    """`heap diff [A [B]] --json`: what changed between snapshots A and B, or A and now."""
    return _run("heap diff", [n for n in (a, b) if n is not None] + _arenas(arena, all_arenas))


def try_free(address: Address, chunk: bool = False) -> Any:
    """`heap try-free ADDR --json` (chunk: --chunk, ADDR is the chunk's header)."""
    return _run("heap try-free", [_address(address)] + (["--chunk"] if chunk else []))


def try_malloc(size: Union[int, str], calloc: bool = False, realloc: Optional[Address] = None) -> Any:
    """`heap try-malloc SIZE --json` (calloc: --calloc; realloc: --realloc PTR)."""
    words = [_address(size)] + (["--calloc"] if calloc else [])
    return _run("heap try-malloc", words + (["--realloc", _address(realloc)] if realloc is not None else []))


def fake_chunks(target: Address, size: Optional[int] = None, window: Optional[int] = None) -> Any:
    """`heap fake-chunks TARGET --json` with --size and --window."""
    return _run("heap fake-chunks", [_address(target)] + _valued(size=size, window=window))
