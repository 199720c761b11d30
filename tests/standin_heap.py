"""A stand-in for another extension's `heap` prefix command (GEF's, pwndbg's), for
tests/test_coexist.py: sourced into gdb before or after gdb_heap."""

import gdb  # type: ignore[import-not-found,unused-ignore]


class TheirHeap(gdb.Command):
    """Their heap command (a stand-in for GEF's or pwndbg's)."""

    def __init__(self) -> None:
        super().__init__("heap", gdb.COMMAND_USER, gdb.COMPLETE_NONE, True)

    def invoke(self, argument: str, from_tty: bool) -> None:
        gdb.write(f"theirs: heap {argument}\n")


TheirHeap()
