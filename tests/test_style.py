"""style.py: the roles, plain output when off, and the escape sequences of Pygments' terminal
formatter (SGR: 34 blue, 01 bold, 04 underline; 39;49;00 resets) when on."""

import pytest

from gdb_heap import style
from gdb_heap.style import PLAIN, Style

RESET = "\x1b[39;49;00m"


def test_the_roles():
    assert set(style.ROLES) == {"address", "size", "free", "top", "in_use", "problem", "heading", "dim", "data",
                                "name", "map0", "map0_header", "map1", "map1_header", "top_header"}


def test_plain_is_the_text_itself():
    assert not PLAIN.enabled
    assert PLAIN("address", "0x1000") == "0x1000"
    assert PLAIN.codes("address") == ("", "")
    assert Style(False)("heading", "x") == "x"


@pytest.mark.skipif(not style.HAVE_PYGMENTS, reason="Pygments is not installed")
def test_colours_when_enabled():
    s = Style(True)
    assert s.enabled
    assert s.codes("address") == ("\x1b[34m", RESET)
    assert s.codes("heading") == ("\x1b[01m", RESET)
    assert s.codes("map0_header") == ("\x1b[04m\x1b[36m", RESET)
    assert s("address", "0x1000") == "\x1b[34m0x1000" + RESET
    assert s("in_use", "text") == "text"  # Token.Text: no colour
    assert s("no such role", "text") == "text"
    assert s("address", "") == ""  # no escape sequences round nothing
    assert s.codes("no such role") == ("", "")
