"""The heap commands, declared once: name, summary, usage, options and example invocations.

gdb-free, so the tests import it too.  Everything that lists the commands takes them from
here: the overview's help, the "undefined heap command" error, completion, the read-only proof
and the live/core comparison.  A new command is one CommandSpec below plus one class in
commands/ decorated with @implements("heap NAME").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .model import BIN_KINDS

JSON = "--json"
ALL_ARENAS = "--all-arenas"
ARENA = "--arena"


@dataclass(frozen=True)
class CommandSpec:
    name: str  # "heap chunks"; "heap" is the prefix command itself
    summary: str  # one line: the first line of its help, and its entry in `help heap`
    usage: str  # what follows "Usage: "
    json: bool = True  # takes --json (one JSON document)
    arenas: bool = False  # takes --arena ADDR and --all-arenas
    flags: Tuple[str, ...] = ()  # its other options without a value
    valued: Tuple[str, ...] = ()  # its other options with a value
    words: Tuple[str, ...] = ()  # positional words to complete (bin kinds)
    address: bool = False  # takes an address (a gdb expression) as its argument
    # Invocations beyond the ones every command gets (see invocations()): "{pointer}" stands
    # for an expression giving a pointer malloc returned.
    examples: Tuple[str, ...] = ()

    @property
    def all_flags(self) -> Tuple[str, ...]:
        return ((JSON,) if self.json else ()) + self.flags + ((ALL_ARENAS,) if self.arenas else ())

    @property
    def all_valued(self) -> Tuple[str, ...]:
        return self.valued + ((ARENA,) if self.arenas else ())

    @property
    def completions(self) -> List[str]:
        return list(self.all_flags) + list(self.all_valued) + list(self.words)

    @property
    def word(self) -> str:
        """The subcommand's word ("chunks"), empty for the prefix."""
        return self.name.split(" ", 1)[1] if " " in self.name else ""

    def invocations(self, pointer: Optional[str] = None) -> List[str]:
        """The command with each way of running it: plain, --json, --all-arenas (text and
        JSON), then its examples.  A command taking an address needs `pointer` (else none)."""
        if self.address:
            if pointer is None:
                return []
            base = [f"{self.name} {pointer}"]
        else:
            base = [self.name]
        out = list(base)
        for b in base:
            if self.json:
                out.append(f"{b} {JSON}")
            if self.arenas:
                out += [f"{b} {ALL_ARENAS}"] + ([f"{b} {ALL_ARENAS} {JSON}"] if self.json else [])
        if pointer is not None:
            out += [e.format(pointer=pointer) for e in self.examples]
        else:
            out += [e for e in self.examples if "{pointer}" not in e]
        return out


COMMANDS: Tuple[CommandSpec, ...] = (
    CommandSpec("heap", "Show glibc malloc's heap: version, arenas, top chunks, heap regions and chunk counts.",
                "heap [--json]"),
    CommandSpec("heap chunks", "List every chunk of an arena's heap(s) in address order.",
                "heap chunks [--limit N] [--summary] [--json] [--arena ADDR | --all-arenas]",
                arenas=True, flags=("--summary",), valued=("--limit",),
                examples=("heap chunks --limit 3", "heap chunks --summary", "heap chunks --summary --json",
                          "heap chunks --summary --all-arenas --json")),
    CommandSpec("heap chunk", "Show one chunk in detail.", "heap chunk ADDR [--json]", address=True,
                examples=("heap chunk (char *){pointer} + 3", "heap chunk (char *){pointer} + 3 --json")),
    CommandSpec("heap bins", "Show the arena's non-empty bins, each chain in list order.",
                "heap bins [KIND...] [--json] [--arena ADDR | --all-arenas] [--all-threads]",
                arenas=True, flags=("--all-threads",), words=BIN_KINDS,
                examples=("heap bins --all-threads --json", "heap bins tcache --all-threads", "heap bins small fast")),
    CommandSpec("heap top", "Show the top chunk: the free space at the end of the heap that malloc cuts new "
                "chunks from.", "heap top [--json] [--arena ADDR | --all-arenas]", arenas=True),
    CommandSpec("heap arenas", "List every arena: address, main or not, top, system memory, heaps, threads.",
                "heap arenas [--json]"),
    CommandSpec("heap check", "Check the integrity of an arena's heap, the way glibc's own checks do.",
                "heap check [--json] [--strict] [--arena ADDR | --all-arenas]", arenas=True, flags=("--strict",)),
    CommandSpec("heap mmapped", "List the mmapped chunks: large blocks that are a mapping of their own.",
                "heap mmapped [--json]"),
    CommandSpec("heap snapshot", "Record the heap as it is (chunks, bins, top), for heap diff.",
                "heap snapshot [NAME]", json=False),
    CommandSpec("heap snapshots", "List the snapshots: name, when, arenas, chunks, record size.",
                "heap snapshots [--json]"),
    CommandSpec("heap diff", "Show what changed between two snapshots, or one and now.",
                "heap diff [A [B]] [--json] [--arena ADDR | --all-arenas]", arenas=True),
)

BY_NAME: Dict[str, CommandSpec] = {c.name: c for c in COMMANDS}
PREFIX = BY_NAME["heap"]
SUBCOMMANDS: Tuple[CommandSpec, ...] = tuple(c for c in COMMANDS if c is not PREFIX)


def spec(name: str) -> CommandSpec:
    return BY_NAME[name]


def subcommand_words() -> List[str]:
    return [c.word for c in SUBCOMMANDS]


def undefined_command(word: str) -> str:
    """The error for `heap WORD` when WORD is no subcommand."""
    return (f"undefined heap command {word!r}; the commands are {', '.join(subcommand_words())} "
            "(see help heap)")


def subcommand_list() -> str:
    """`help heap`'s list: each subcommand and its summary."""
    width = max(len(c.name) for c in SUBCOMMANDS)
    return "\n".join(f"  {c.name:<{width}}  {c.summary}" for c in SUBCOMMANDS)


def help_text(name: str, body: str) -> str:
    """A command's gdb help: summary line, usage, then the class's own text (where
    "{subcommands}" stands for the list of subcommands)."""
    c = spec(name)
    return f"{c.summary}\n\nUsage: {c.usage}\n\n{body.strip()}".replace("{subcommands}", subcommand_list())


def every_invocation(pointer: Optional[str] = None, json_only: bool = False,
                     specs: Sequence[CommandSpec] = COMMANDS) -> List[str]:
    """Every command's invocations (the read-only proof runs them all; the core comparison
    the JSON ones)."""
    out = [i for c in specs for i in c.invocations(pointer)]
    return [i for i in out if i.endswith(JSON)] if json_only else out
