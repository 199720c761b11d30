"""Colour through Pygments' token styles, on only when gdb's `set style enabled` is on.

Each role maps to a Pygments token; the escape sequences for a role are worked out once by
formatting a marker with Pygments' terminal formatter, so colouring a million lines costs a
string concatenation each, not a Pygments call.  Without Pygments, output is plain.
"""

from __future__ import annotations

from typing import Dict, Tuple

try:
    from pygments import format as _pyg_format
    from pygments.formatters.terminal import TerminalFormatter
    from pygments.token import Token

    ROLES = {
        "address": Token.Literal.Number,
        "size": Token.Name.Attribute,
        "free": Token.Name.Function,
        "top": Token.Operator.Word,
        "in_use": Token.Text,
        "problem": Token.Generic.Error,
        "heading": Token.Generic.Heading,
        "dim": Token.Comment,
        "data": Token.Literal.String,
        "name": Token.Keyword,
        # heap map: two colours that alternate from chunk to chunk, underlined for the header
        "map0": Token.Name.Builtin,
        "map0_header": Token.Name.Namespace,
        "map1": Token.Name.Function,
        "map1_header": Token.Name.Class,
        "top_header": Token.Generic.Subheading,
    }
    HAVE_PYGMENTS = True
except ImportError:  # gdb's Python without Pygments: plain output
    ROLES = {}
    HAVE_PYGMENTS = False

_MARK = "\x00"


class Style:
    """style(role, text) -> text wrapped in the role's colour, or text as it is."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and HAVE_PYGMENTS
        self._codes: Dict[str, Tuple[str, str]] = {}
        if self.enabled:
            formatter = TerminalFormatter()
            for role, token in ROLES.items():
                text = _pyg_format([(token, _MARK)], formatter)
                before, _, after = text.partition(_MARK)
                self._codes[role] = (before, after.rstrip("\n"))

    def codes(self, role: str) -> Tuple[str, str]:
        """The escape sequences around a role's text ("" and "" when plain)."""
        return self._codes.get(role, ("", ""))

    def __call__(self, role: str, text: str) -> str:
        codes = self._codes.get(role)
        if not codes or not text:
            return text
        return codes[0] + text + codes[1]


PLAIN = Style(False)
