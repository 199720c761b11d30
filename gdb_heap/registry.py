"""The heap commands, declared once: name, summary, usage, options and example invocations.

gdb-free, so the tests import it too.  Everything that lists the commands takes them from
here: the overview's help, the "undefined heap command" error, completion, the read-only proof
and the live/core comparison.  A new command is one CommandSpec below plus one class in
commands/ decorated with @implements("heap NAME").
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .model import BIN_KINDS

# Every command is also under this second prefix ("gheap chunks"), which stays ours when
# another extension (GEF, pwndbg) owns or later takes `heap`.
PREFIXES = ("heap", "gheap")
JSON = "--json"
ALL_ARENAS = "--all-arenas"
ARENA = "--arena"
OUTPUT = "--output"  # every --json command: the document goes to FILE (commands/base.py writes it)


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
    counted: Tuple[str, ...] = ()  # its options that take a number when one follows
    # Invocations beyond the ones every command gets (see invocations()): "{pointer}" stands
    # for an expression giving a pointer malloc returned.
    examples: Tuple[str, ...] = ()

    @property
    def all_flags(self) -> Tuple[str, ...]:
        return ((JSON,) if self.json else ()) + self.flags + ((ALL_ARENAS,) if self.arenas else ())

    @property
    def all_valued(self) -> Tuple[str, ...]:
        return self.valued + ((ARENA,) if self.arenas else ()) + ((OUTPUT,) if self.json else ())

    @property
    def full_usage(self) -> str:
        """The usage with what every --json command takes: --output FILE after --json."""
        return self.usage.replace(f"[{JSON}]", f"[{JSON} [{OUTPUT} FILE]]") if self.json else self.usage

    @property
    def options(self) -> List[str]:
        return list(self.all_flags) + list(self.all_valued) + list(self.counted)

    def named(self, prefix: str) -> str:
        """The command's name under `prefix` (one of PREFIXES): "gheap chunks"."""
        return " ".join([prefix] + self.name.split(" ")[1:])

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
    CommandSpec("heap", "Show glibc malloc's heap: version, arenas, top chunks, regions, counts.",
                "heap [--json]"),
    CommandSpec("heap chunks", "List every chunk of an arena's heap(s) in address order.",
                "heap chunks [--state in_use|free|top] [--bin KIND] [--min-size N] [--max-size N] "
                "[--from ADDR] [--to ADDR] [--limit N] [--summary] [--json] [--arena ADDR | --all-arenas]",
                arenas=True, flags=("--summary",),
                valued=("--limit", "--state", "--bin", "--min-size", "--max-size", "--from", "--to"),
                examples=("heap chunks --limit 3", "heap chunks --summary", "heap chunks --summary --json",
                          "heap chunks --summary --all-arenas --json", "heap chunks --state free --json",
                          "heap chunks --bin tcache --min-size 0x30 --summary")),
    CommandSpec("heap chunk", "Show one chunk in detail.", "heap chunk ADDR [--dump [N]] [--json]", address=True,
                counted=("--dump",),
                examples=("heap chunk (char *){pointer} + 3", "heap chunk (char *){pointer} + 3 --json",
                          "heap chunk {pointer} --dump", "heap chunk {pointer} --dump 64")),
    CommandSpec("heap bins", "Show the arena's non-empty bins, each chain in list order.",
                "heap bins [KIND...] [--json] [--arena ADDR | --all-arenas] [--all-threads]",
                arenas=True, flags=("--all-threads",), words=BIN_KINDS,
                examples=("heap bins --all-threads --json", "heap bins tcache --all-threads", "heap bins small fast")),
    CommandSpec("heap top", "Show the top chunk, the free space new chunks are cut from.",
                "heap top [--json] [--arena ADDR | --all-arenas]", arenas=True),
    CommandSpec("heap arenas", "List every arena: top, system memory, heaps, threads.",
                "heap arenas [--json]"),
    CommandSpec("heap check", "Check an arena's heap the way glibc's own checks do.",
                "heap check [--json] [--strict] [--arena ADDR | --all-arenas]", arenas=True, flags=("--strict",)),
    CommandSpec("heap mmapped", "List the mmapped chunks: blocks mapped on their own.",
                "heap mmapped [--json]"),
    CommandSpec("heap map", "Show chunks laid out in memory, word by word.",
                "heap map [ADDR] [--count N] [--arena ADDR]", json=False, valued=("--count", "--arena"),
                examples=("heap map --count 4", "heap map {pointer} --count 3")),
    CommandSpec("heap where", "Say what an address is: chunk, malloc state, stack, global.",
                "heap where ADDR [--json]", address=True,
                examples=("heap where (char *){pointer} + 3", "heap where (char *){pointer} + 3 --json")),
    CommandSpec("heap layout", "Show the address space as malloc sees it, thread by thread.",
                "heap layout", json=False),
    # Only showing the calls is run by the read-only proof: start sets breakpoints (gdb's own).
    CommandSpec("heap trace", "Trace every malloc and free as the program runs, and why.",
                "heap trace [start [--ring N] | stop | clear] [--last N] [--thread N] [--json]",
                valued=("--ring", "--last", "--thread"), words=("start", "stop", "clear"),
                examples=("heap trace --last 3", "heap trace --thread 1 --json")),
    CommandSpec("heap snapshot", "Record the heap (chunks, bins, top) for heap diff.",
                "heap snapshot [NAME]", json=False),
    CommandSpec("heap snapshots", "List the snapshots: name, when, arenas, chunks, size.",
                "heap snapshots [--json]"),
    CommandSpec("heap diff", "Show what changed between two snapshots, or one and now.",
                "heap diff [A [B]] [--json] [--arena ADDR | --all-arenas]", arenas=True),
    CommandSpec("heap try-free", "Say what free(ADDR) would do now: the abort or the bin.",
                "heap try-free ADDR [--chunk] [--json]", flags=("--chunk",), address=True),
    CommandSpec("heap try-malloc", "Say what malloc(SIZE) would return now, or the abort.",
                "heap try-malloc SIZE [--calloc | --realloc PTR] [--json]",
                flags=("--calloc",), valued=("--realloc",),
                address=True,  # SIZE is a gdb expression like an address; invoked with the pointer too
                examples=("heap try-malloc 24", "heap try-malloc 24 --json", "heap try-malloc 0x500 --calloc --json",
                          "heap try-malloc 0x30000 --json")),
    CommandSpec("heap fake-chunks", "Find fake chunk headers glibc would take near TARGET.",
                "heap fake-chunks TARGET [--size N] [--window N] [--json]",
                valued=("--size", "--window"), address=True,
                examples=("heap fake-chunks {pointer} --window 0x40 --json",)),
)

BY_NAME: Dict[str, CommandSpec] = {c.name: c for c in COMMANDS}
PREFIX = BY_NAME["heap"]
SUBCOMMANDS: Tuple[CommandSpec, ...] = tuple(c for c in COMMANDS if c is not PREFIX)


def spec(name: str) -> CommandSpec:
    return BY_NAME[name]


def subcommand_words() -> List[str]:
    return [c.word for c in SUBCOMMANDS]


def undefined_command(word: str, prefix: str = "heap") -> str:
    """The error for `heap WORD` when WORD is no subcommand."""
    return (f"undefined {prefix} command {word!r}; the commands are {', '.join(subcommand_words())} "
            f"(see help {prefix})")


HELP_WIDTH = 80  # help lines are wrapped for an 80-column terminal


def wrap(text: str, indent: str = "", first: str = "") -> str:
    """`text` wrapped at HELP_WIDTH, its first line after `first`, the others after `indent`."""
    return textwrap.fill(text, HELP_WIDTH, initial_indent=first, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def subcommand_list(prefix: str = "heap") -> str:
    """`help heap`'s list: each subcommand and its summary."""
    names = [c.named(prefix) for c in SUBCOMMANDS]
    width = max(len(n) for n in names)
    return "\n".join(wrap(c.summary, " " * (width + 4), f"  {n:<{width}}  ") for n, c in zip(names, SUBCOMMANDS))


def help_text(name: str, body: str, prefix: str = "heap") -> str:
    """A command's gdb help under `prefix`: summary line, usage, then the class's own text
    (where "{subcommands}" stands for the list of subcommands)."""
    c = spec(name)
    usage = wrap(c.named(prefix) + c.full_usage[len(c.name):], " " * len(f"Usage: {prefix} "), "Usage: ")
    return f"{c.summary}\n\n{usage}\n\n{body.strip()}".replace("{subcommands}", subcommand_list(prefix))


# What completion does after the words typed: a list of words, or EXPRESSION: let gdb complete
# a C expression, as `print` does (symbols, struct fields).
EXPRESSION = "expression"
FILENAME = "filename"  # let gdb complete a file name (--output FILE)


def completion(c: CommandSpec, text: str, word: Optional[str]) -> Union[List[str], str]:
    """What <Tab> offers after `text` (the arguments typed so far; `word` is the part gdb will
    replace).  An option already given is not offered again (nor its exclusive partner); after
    an option that takes a value, only that value's completion (an expression for --arena,
    a file name for --output, nothing for a number); an address completes as an expression unless it starts with '-'."""
    words = text.split()
    last = "" if not text or text[-1].isspace() else words.pop()
    given = {w.partition("=")[0] for w in words}
    if words and words[-1] in c.all_valued:  # its value is being typed
        return EXPRESSION if words[-1] == ARENA else FILENAME if words[-1] == OUTPUT else []
    if "=" in last:  # --limit=N, --arena=EXPR: nothing to offer
        return []
    if c.address and not last.startswith("-"):
        return EXPRESSION
    if ARENA in given or ALL_ARENAS in given:
        given |= {ARENA, ALL_ARENAS}
    candidates = [o for o in c.options + list(c.words) if o not in given]
    cut = len(last) - len(word or "")  # gdb's word stops at '-': return only what it replaces
    return [o[cut:] for o in candidates if o.startswith(last)]


def every_invocation(pointer: Optional[str] = None, json_only: bool = False,
                     specs: Sequence[CommandSpec] = COMMANDS) -> List[str]:
    """Every command's invocations (the read-only proof runs them all; the core comparison
    the JSON ones)."""
    out = [i for c in specs for i in c.invocations(pointer)]
    return [i for i in out if i.endswith(JSON)] if json_only else out


def taken_message(ours: str) -> str:
    """What loading says when another extension (GEF, pwndbg) already has `heap`."""
    return f"gdb_heap: `{PREFIX.name}` is another extension's, left to it; ours are `{ours} ...` (help {ours})"
