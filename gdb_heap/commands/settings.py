"""set heap / show heap: the defaults the heap commands take (an option given still wins), and
addresses that override what the commands find themselves.  Bare `show heap` lists them all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import gdb  # type: ignore[import-not-found,unused-ignore]

from .. import registry, trace, views
from ..heap import HELPER_MIN_MIB


@dataclass(frozen=True)
class Setting:
    """One `set heap NAME N`: a count (gdb's PARAM_UINTEGER when 0 means
    unlimited, else PARAM_ZUINTEGER), its default and bounds, and the texts gdb
    shows for it."""

    name: str
    default: int
    what: str  # the show line's subject: "<what> is 16."
    doc: str  # the help text (help set heap NAME, and bare show heap)
    unlimited: bool = False  # 0 or `unlimited` means no limit (the value is then None)
    low: int = 0
    high: Optional[int] = None


SETTINGS = (
    Setting("preview-bytes", 16, "Bytes of user data each heap chunks line previews",
            "heap chunks shows each chunk's first N user bytes as words (x/2gx's view) and ASCII, as many as "
            "fit gdb's width; 16 is two words on 64-bit, four on 32-bit; 0 shows none.", high=256),
    Setting("chain-limit", 0, "Chunks heap bins shows of each bin chain",
            "heap bins shows the first N chunks of each bin chain, then how many more it holds; 0 or unlimited "
            "(the default): every chunk.  The count, the checks and the JSON always cover the whole chain.",
            unlimited=True),
    Setting("chunks-limit", 0, "Chunks heap chunks lists before it stops",
            "heap chunks stops its listing after N chunks (as --limit N does, which wins over it) and says so; "
            "0 or unlimited (the default): every chunk.  --json and --summary are not cut unless --limit "
            "is given: a document is never shortened by a display setting.", unlimited=True),
    Setting("map-count", views.MAP_COUNT, "Chunks heap map shows",
            f"heap map shows N chunks when --count is not given (1 to {views.MAP_MAX_COUNT}).", low=1,
            high=views.MAP_MAX_COUNT),
    Setting("helper-min", HELPER_MIN_MIB, "Arena size (MiB) from which a helper follows the bins",
            "On a live process, heap chunks, heap, heap check, heap snapshot and heap diff fork a helper for an "
            "arena of at least N MiB: a copy of gdb's Python that reads the process's memory itself, never calls "
            "gdb, and follows the arena's bins on another processor while gdb walks the heap (for a summary it "
            "counts their chunks too); for a listing it then makes the output of the heap's last part while gdb "
            "makes the first (the output is the same).  0: never; gdb does it all itself, as it does on a core "
            "file or a remote target.", high=1 << 20),
    Setting("trace-ring", trace.DEFAULT_RING, "Calls heap trace start keeps",
            "heap trace start keeps the last N calls when --ring is not given (older ones are dropped and "
            "counted); it applies to the next heap trace start.", low=1),
)
BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
MADE: Dict[str, CountSetting] = {}


def setting(name: str) -> Optional[int]:
    """The value of `set heap NAME` (its default before gdb_heap registers it); None: unlimited."""
    made = MADE.get(name)
    if made is not None:
        return made.current()
    s = BY_NAME[name]
    return None if s.unlimited and s.default == 0 else s.default


class HeapSet(gdb.Command):
    """Settings of the heap commands: the defaults of their options (an option given
wins) and addresses that override what they find.  "show heap" lists them with
their values."""

    def __init__(self) -> None:
        super().__init__("set heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class HeapShow(gdb.Command):
    """Show the settings of the heap commands: bare "show heap" lists every one
with its value and what it does (see help set heap)."""

    def __init__(self) -> None:
        super().__init__("show heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)

    def invoke(self, argument: str, from_tty: bool) -> None:
        if argument.strip():
            raise gdb.GdbError(f"heap: no setting {argument.strip()!r}; the settings are "
                               f"{', '.join(all_names())} (show heap lists them)")
        lines: List[str] = []
        for name in all_names():
            shown = gdb.execute(f"show heap {name}", to_string=True).strip()
            lines.append(f"heap {name}:  {shown}")
            lines.append(registry.wrap(doc_of(name), "    ", "    "))
        gdb.write("\n".join(lines) + "\n")


def all_names() -> List[str]:
    return [s.name for s in SETTINGS] + list(ADDRESSES)


def doc_of(name: str) -> str:
    return BY_NAME[name].doc if name in BY_NAME else ADDRESS_DOC.format(what=ADDRESSES[name])


class CountSetting(gdb.Parameter):
    """`set heap NAME N`: a count one of the commands takes as its default."""

    def __init__(self, s: Setting) -> None:
        self.setting = s
        self.set_doc = f"Set {s.what[0].lower() + s.what[1:]}."
        self.show_doc = f"Show {s.what[0].lower() + s.what[1:]}."
        self.__doc__ = registry.wrap(s.doc)
        super().__init__(f"heap {s.name}", gdb.COMMAND_DATA, gdb.PARAM_UINTEGER if s.unlimited
                         else gdb.PARAM_ZUINTEGER)
        self.value = s.default
        self.last = s.default
        MADE[s.name] = self

    def current(self) -> Optional[int]:
        value = self.value
        return None if not isinstance(value, int) or (self.setting.unlimited and value == 0) else value

    def get_set_string(self) -> str:
        s, value = self.setting, self.current()
        if value is not None and (value < s.low or (s.high is not None and value > s.high)):
            self.value = self.last  # gdb has stored it already: put the last good one back
            bounds = f"{s.low} to {s.high}" if s.high is not None else f"at least {s.low}"
            raise gdb.GdbError(f"heap: set heap {s.name} wants {bounds}, not {value}; "
                               f"see help set heap {s.name}")
        self.last = 0 if value is None else value
        return ""

    def get_show_string(self, svalue: str) -> str:
        return f"{self.setting.what} is {svalue}."


ADDRESSES = {"main-arena": "main_arena", "mp": "mp_"}
ADDRESS_DOC = ("Where {what} is (any gdb expression), for a C library without symbols when the heuristic "
               "finds none or several; empty (the default): found from symbols or by the heuristic.")


class AddressSetting(gdb.Parameter):
    """An address (any gdb expression) overriding what the heap commands find."""

    def __init__(self, name: str) -> None:
        what = ADDRESSES[name]
        self.set_doc = f"Set where {what} is (an address or expression; empty: find it automatically)."
        self.show_doc = f"Show where the heap commands take {what} to be."
        self.__doc__ = registry.wrap(ADDRESS_DOC.format(what=what))
        self.what = what
        super().__init__(f"heap {name}", gdb.COMMAND_DATA, gdb.PARAM_STRING)
        self.value = ""

    def get_set_string(self) -> str:
        return f"heap: {self.what} is {self.value}" if self.value else f"heap: {self.what} is found automatically"

    def get_show_string(self, svalue: str) -> str:
        return f"{self.what}: {svalue or 'found automatically'}"


def register() -> None:
    HeapSet()
    HeapShow()
    for s in SETTINGS:
        CountSetting(s)
    for name in ADDRESSES:
        AddressSetting(name)
