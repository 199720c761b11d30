"""Shared plumbing of the heap commands: output, opening the heap, arguments, errors, completion.

A command is a HeapCommand subclass decorated with @implements("heap NAME"): its name, options,
summary and usage come from registry.py; its class docstring is the rest of its help; its
run() parses nothing itself (the options are checked before) and calls gdb-free code.
run() is the only writer of a command's JSON document: to gdb's output, to --output FILE
(every --json command), or into gdb_heap.api's return value (HeapCommand.document).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Type, TypeVar, Union

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import registry
from ..args import Args, parse
from ..errors import HeapError
from ..frames import thread_frames
from ..gdbmemory import GdbMemory, process_memory_file
from ..heap import Anchors, Heap
from ..in_progress import note
from ..locate import (locate, process_mappings, require_process, single_thread, symbol_at, threads_info, warn_once,
                      word_size)
from ..memory import Reader
from ..pointers import Namer
from ..progress import QUIET, Progress
from ..release import release
from ..model import Arena
from ..style import Style
from ..terminal import colour_wanted
from .settings import setting

WRITE_BATCH = 1 << 20  # characters per gdb.write call when streaming


class Out:
    """Buffered gdb.write (or `sink`: a file's write, a list's append): few calls for a
    million lines."""

    def __init__(self, sink: Optional[Callable[[str], object]] = None) -> None:
        self.parts: List[str] = []
        self.size = 0
        self.sink = sink

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= WRITE_BATCH:
            self.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def lines(self, lines: Iterable[str]) -> None:
        parts = self.parts
        for text in lines:
            parts.append(text)
            parts.append("\n")
            if len(parts) >= 16384:
                self.flush()
                parts = self.parts

    def flush(self) -> None:
        if self.parts:
            text = "".join(self.parts)
            self.parts, self.size = [], 0
            if self.sink is None:
                gdb.write(text)
            else:
                self.sink(text)

    def json(self, doc: object) -> None:
        self.line(json.dumps(doc))


def open_heap(args: Args) -> Heap:
    require_process()
    maps, source = process_mappings()
    holes = [(m.missing_from, m.end) for m in maps if m.missing_from is not None]
    reader = Reader(GdbMemory(holes), word_size())
    found = locate(reader, maps)
    state, tls = found.state, found.tls
    glibc = f"{state.version[0]}.{state.version[1]}" if state.version else None
    anchors = Anchors(state.main_arena, state.mp, glibc, state.located_by, tls.tcache or None,
                      tls.arena or None, state.notes + [tcache_note(tls.tcache_how)],
                      lambda: threads_info(found.context), lambda: (maps, source), symbol=symbol_at,
                      frames=lambda: thread_frames(found.context), tcache_key=state.tcache_key,
                      libc_data=state.data_spans, single_thread=single_thread(found.context),
                      memory_file=lambda: process_memory_file(state.main_arena))
    heap = Heap(reader, state.layout, anchors)
    heap.progress = _progress
    heap.helper_min_mib = setting("helper-min") or 0
    if not args.flag("--json"):  # a JSON document is all --json prints (notes: heap's overview)
        for text in state.notes:
            warn_once(text)
        for call in heap.mid_update.calls:  # on every command: the heap may change under the user's eyes
            gdb.write(f"heap: warning: {note(call)}\n", gdb.STDERR)
    return heap


def tcache_note(how: str) -> str:
    return f"tcache {how}" if how.startswith("not found") else f"tcache found by {how}"


def style() -> Style:
    return Style(colour_wanted())


def width() -> Optional[int]:
    """gdb's `width`: None when unlimited (batch mode, `set width unlimited`)."""
    try:
        value = gdb.parameter("width")
    except (gdb.error, RuntimeError):
        return None
    return int(value) if value else None


def namer(heap: Heap) -> Namer:
    """What each pointer points at, for one command (symbols looked up once per address, by the
    anchors' one `info symbol` lookup)."""
    try:
        maps = heap.anchors.mappings()[0]
    except (gdb.error, RuntimeError, HeapError):
        maps = []
    return Namer(heap, mappings=maps)


def evaluate_address(expression: str) -> int:
    try:
        value = gdb.parse_and_eval(expression)
        if value.type.strip_typedefs().code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_FUNC, gdb.TYPE_CODE_STRUCT) \
                and value.address:  # an object names its address (main_arena, a struct)
            value = value.address
        return int(value.cast(gdb.lookup_type("unsigned long"))) & ((1 << (8 * word_size())) - 1)
    except (gdb.error, RuntimeError) as e:
        raise HeapError(f"cannot evaluate {expression!r} ({e}); give an address or a gdb expression") from None


def arenas_for(heap: Heap, args: Args) -> List[Arena]:
    """--all-arenas: every arena; --arena ADDR: that one; else the selected thread's."""
    if args.flag("--all-arenas"):
        return heap.arenas
    arena = args.value("--arena")
    return [heap.arena(evaluate_address(arena) if arena is not None else None)]


def one_or_all(args: Args, docs: Sequence[object]) -> object:
    """The JSON document of an --arena/--all-arenas command: one arena's, or {"arenas": [...]}."""
    return {"arenas": list(docs)} if args.flag("--all-arenas") else docs[0]


_progress = QUIET  # the running command's (HeapCommand.invoke)


def _batch_mode() -> bool:
    """gdb -batch (gdb's Python cannot ask): its command line says."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return any(w in (b"-batch", b"--batch", b"-batch-silent", b"--batch-silent") for w in words)


def progress_for(args: Args) -> Progress:
    """Progress on gdb's stderr where a person watches it: a terminal, not batch mode, not --json."""
    if args.flag("--json") or not os.isatty(2) or _batch_mode():
        return QUIET
    def write(text: str) -> None:
        os.write(2, text.encode())  # gdb's stderr itself: neither the pager nor a logging redirect
    return Progress(write)


class HeapCommand(gdb.Command):
    """Shared by every heap command: errors, completion, no repetition on Enter."""

    spec: registry.CommandSpec
    body: str  # the class's own help text

    def __init__(self, prefix: str = "heap") -> None:
        self.name = self.spec.named(prefix)  # "heap chunks" or "gheap chunks"
        self.__doc__ = registry.help_text(self.spec.name, self.body, prefix)  # gdb reads it from self
        # No completer class: gdb then asks our complete() method.
        super().__init__(self.name, gdb.COMMAND_DATA, prefix=self.spec is registry.PREFIX)
        MADE.setdefault(self.spec.name, self)

    def invoke(self, argument: str, from_tty: bool) -> None:
        self.dont_repeat()
        global _progress
        out = Out()
        with reported(out):
            args = self.parse(argument)
            path = args.value(registry.OUTPUT)
            _progress = progress_for(args)
            try:
                if path is None:
                    self.run(args, out)
                    out.flush()
                else:
                    write_file(path, lambda to: self.run(args, to))
            finally:
                _progress.end()
                _progress = QUIET
                release()  # what the command freed, back to the kernel: gdb's memory stays flat

    def parse(self, argument: str) -> Args:
        args = parse(self.name, argument, self.spec.all_flags, self.spec.all_valued, self.spec.counted)
        if args.value(registry.OUTPUT) is not None and not args.flag(registry.JSON):
            raise HeapError(f"{registry.OUTPUT} FILE writes the JSON document: add {registry.JSON} "
                            f"(text goes to a file with gdb's `pipe {self.name} > FILE` or `set logging`)")
        return args

    def document(self, argument: str) -> Any:
        """What `COMMAND ARGUMENT --json` prints, as Python objects (gdb_heap.api): the same run()
        writes it, into a string instead of gdb's output."""
        parts: List[str] = []
        with reported():
            args = self.parse(f"{argument} {registry.JSON}")
            if args.value(registry.OUTPUT) is not None:
                raise HeapError(f"{registry.OUTPUT} is for the command; write the document from the script")
            out = Out(parts.append)
            try:
                self.run(args, out)
            finally:
                release()
            out.flush()
        return json.loads("".join(parts))

    def complete(self, text: str, word: Optional[str]) -> Union[List[str], int]:
        found = registry.completion(self.spec, text, word)
        if found == registry.EXPRESSION:
            return gdb.COMPLETE_EXPRESSION
        if found == registry.FILENAME:
            typed = "" if not text or text[-1].isspace() else text.split()[-1]
            return file_names(typed, word or "")
        return found  # type: ignore[return-value]

    def run(self, args: Args, out: Out) -> None:
        raise NotImplementedError

    def no_extra(self, args: Args) -> None:
        if args.rest:
            raise HeapError(f"unexpected argument {args.rest[0]!r}; see help {self.name}")


def file_names(typed: str, word: str) -> List[str]:
    """The files and folders whose path starts with `typed`, as the part gdb replaces (`word`).
    Ours: gdb's COMPLETE_FILENAME from a Python command completes the whole argument text."""
    folder, slash, stem = typed.rpartition("/")
    where = os.path.expanduser(folder + slash) if slash else "."
    try:
        names = sorted(n for n in os.listdir(where) if n.startswith(stem))
    except OSError:
        return []
    cut = len(typed) - len(word)
    paths = [folder + slash + n + ("/" if os.path.isdir(os.path.join(where, n)) else "") for n in names]
    return [p[cut:] for p in paths]


@contextlib.contextmanager
def reported(out: Optional[Out] = None) -> Iterator[None]:
    """Every failure inside as one `heap: ...` gdb error (what was written before it first)."""
    try:
        yield
    except gdb.GdbError:
        raise
    except HeapError as e:
        if out is not None:
            out.flush()
        raise gdb.GdbError(f"heap: {e}") from None
    except KeyboardInterrupt:
        raise gdb.GdbError("heap: interrupted") from None
    except gdb.MemoryError as e:
        raise gdb.GdbError(f"heap: cannot read memory ({e}); the process or core lacks that region") from None
    except gdb.error as e:
        if str(e) == "Quit":  # Ctrl-C inside a gdb call (a read, a write)
            raise gdb.GdbError("heap: interrupted") from None
        raise gdb.GdbError(f"heap: internal error (error: {e}); please report it with "
                           f"the command you ran") from None
    except Exception as e:  # never a traceback in front of the user
        raise gdb.GdbError(f"heap: internal error ({type(e).__name__}: {e}); please report it with "
                           f"the command you ran") from None


def write_file(path: str, write: Callable[[Out], None]) -> None:
    """--output FILE: what `write` writes goes to FILE (streamed: a million chunks), nothing to
    gdb's output; a command that fails leaves no file behind."""
    path = os.path.expanduser(path)
    try:
        f = open(path, "w", encoding="utf-8")
    except OSError as e:
        raise HeapError(f"cannot write {path} ({e.strerror or e}); give a file in a directory you can write to") \
            from None
    try:
        with f:
            out = Out(f.write)
            write(out)
            out.flush()
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(e, OSError):
            raise HeapError(f"cannot write {path} ({e.strerror or e}); free some space or give another "
                            "file") from None
        raise


CLASSES: Dict[str, Type[HeapCommand]] = {}
MADE: Dict[str, HeapCommand] = {}  # each command's gdb object, under the first prefix made (gdb_heap.api runs it)
C = TypeVar("C", bound=Type[HeapCommand])


def implements(name: str) -> Callable[[C], C]:
    """Ties a command class to its registry entry: name, options, and the summary and usage
    that head its help (the class docstring is the rest)."""
    def tie(cls: C) -> C:
        cls.spec = registry.spec(name)
        cls.body = cls.__doc__ or ""
        cls.__doc__ = registry.help_text(name, cls.body)
        CLASSES[name] = cls
        return cls
    return tie
