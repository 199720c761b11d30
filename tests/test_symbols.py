"""symbols.py: gdb's `info symbol` answers parsed (the texts as gdb 13 prints them)."""

from gdb_heap import symbols
from gdb_heap.symbols import Symbol


def test_a_symbol_with_an_offset_in_a_library():
    text = "main_arena + 96 in section .data of /lib/x86_64-linux-gnu/libc.so.6\n"
    s = symbols.parse(text)
    assert s == Symbol("main_arena", 96, "main_arena + 96 in section .data of /lib/x86_64-linux-gnu/libc.so.6")
    assert str(s) == "main_arena+96"


def test_a_symbol_at_its_start():
    s = symbols.parse("  fake in section .bss\nsecond line\n")
    assert s == Symbol("fake", 0, "fake in section .bss")
    assert str(s) == "fake"


def test_no_symbol_and_other_texts():
    assert symbols.parse("No symbol matches 0x5555555592a0.") is None
    assert symbols.parse("") is None
    assert symbols.parse("  \n ") is None
    assert symbols.parse("main_arena + x in section .data") is None  # not a number
    assert symbols.parse("the fake in section .bss") is None  # one word, from the start
    assert symbols.parse("fake in sections") is None
    assert symbols.parse("x in section .data").offset == 0  # type: ignore[union-attr]
    assert symbols.parse("big + 1234567 in section .bss").offset == 1234567  # type: ignore[union-attr]


def test_no_symbol_lookup():
    assert symbols.no_symbol(0x1000) is None


def test_symbols_are_values():
    a = Symbol("g", 3, "g + 3 in section .data")
    assert a == Symbol("g", 3, "g + 3 in section .data") and hash(a) == hash(Symbol("g", 3, "g + 3 in section .data"))
    assert str(Symbol("g", 1, "")) == "g+1"
