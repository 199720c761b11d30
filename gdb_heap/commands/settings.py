"""set heap / show heap: addresses that override what the heap commands find themselves."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found,unused-ignore]


class HeapSet(gdb.Command):
    """Settings of the heap commands.

set heap main-arena EXPR: where main_arena is, when the C library has no
  symbols and the heuristic finds none or several (empty: find it again).
set heap mp EXPR: the same for mp_."""

    def __init__(self) -> None:
        super().__init__("set heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class HeapShow(gdb.Command):
    """Show the settings of the heap commands (see help set heap)."""

    def __init__(self) -> None:
        super().__init__("show heap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class AddressSetting(gdb.Parameter):
    """An address (any gdb expression) overriding what the heap commands find."""

    def __init__(self, name: str, what: str) -> None:
        self.set_doc = f"Set where {what} is (an address or expression; empty: find it automatically)."
        self.show_doc = f"Show where the heap commands take {what} to be."
        self.__doc__ = (f"Where {what} is, for the heap commands, when the C library has no symbols.\n"
                        f"Empty (the default): found from symbols or by the heuristic.")
        self.what = what
        super().__init__(f"heap {name}", gdb.COMMAND_DATA, gdb.PARAM_STRING)
        self.value = ""

    def get_set_string(self) -> str:
        return f"heap: {self.what} is {self.value}" if self.value else f"heap: {self.what} is found automatically"

    def get_show_string(self, svalue: str) -> str:
        return f"{self.what}: {svalue or 'found automatically'}"
