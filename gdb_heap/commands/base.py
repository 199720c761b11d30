"""Shared plumbing of the heap commands: output, opening the heap, arguments, errors, completion.

A command is a HeapCommand subclass decorated with @implements("heap NAME"): its name, options,
summary and usage come from registry.py; its class docstring is the rest of its help; its
run() parses nothing itself (the options are checked before) and calls gdb-free code.
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Type, TypeVar, Union

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import registry
from ..args import Args, parse
from ..errors import HeapError
from ..frames import thread_frames
from ..gdbmemory import GdbMemory
from ..heap import Anchors, Heap
from ..in_progress import note
from ..locate import locate, process_mappings, require_process, symbol_at, threads_info, warn_once, word_size
from ..memory import Reader
from ..pointers import Namer
from ..model import Arena
from ..style import Style
from ..terminal import colour_wanted

WRITE_BATCH = 1 << 20  # characters per gdb.write call when streaming


class Out:
    """Buffered gdb.write: few calls for a million lines."""

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.size = 0

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
            gdb.write("".join(self.parts))
            self.parts, self.size = [], 0

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
                      libc_data=state.data_spans)
    heap = Heap(reader, state.layout, anchors)
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


class HeapCommand(gdb.Command):
    """Shared by every heap command: errors, completion, no repetition on Enter."""

    spec: registry.CommandSpec
    body: str  # the class's own help text

    def __init__(self, prefix: str = "heap") -> None:
        self.name = self.spec.named(prefix)  # "heap chunks" or "gheap chunks"
        self.__doc__ = registry.help_text(self.spec.name, self.body, prefix)  # gdb reads it from self
        # No completer class: gdb then asks our complete() method.
        super().__init__(self.name, gdb.COMMAND_DATA, prefix=self.spec is registry.PREFIX)

    def invoke(self, argument: str, from_tty: bool) -> None:
        self.dont_repeat()
        out = Out()
        try:
            self.run(parse(self.name, argument, self.spec.all_flags, self.spec.all_valued, self.spec.counted), out)
            out.flush()
        except gdb.GdbError:
            raise
        except HeapError as e:
            out.flush()
            raise gdb.GdbError(f"heap: {e}") from None
        except KeyboardInterrupt:
            raise gdb.GdbError("heap: interrupted") from None
        except gdb.MemoryError as e:
            raise gdb.GdbError(f"heap: cannot read memory ({e}); the process or core lacks that region") from None
        except Exception as e:  # never a traceback in front of the user
            raise gdb.GdbError(f"heap: internal error ({type(e).__name__}: {e}); please report it with "
                               f"the command you ran") from None

    def complete(self, text: str, word: Optional[str]) -> Union[List[str], int]:
        found = registry.completion(self.spec, text, word)
        return gdb.COMPLETE_EXPRESSION if found == registry.EXPRESSION else found  # type: ignore[return-value]

    def run(self, args: Args, out: Out) -> None:
        raise NotImplementedError

    def no_extra(self, args: Args) -> None:
        if args.rest:
            raise HeapError(f"unexpected argument {args.rest[0]!r}; see help {self.name}")


CLASSES: Dict[str, Type[HeapCommand]] = {}
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
