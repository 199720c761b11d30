"""Argument parsing for the heap commands: options, their values, and the rest.

Our own small parser: argparse prints and exits on errors, which must instead become one
`heap: ...` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .errors import HeapError

FLAGS = ("--json", "--summary", "--all-arenas", "--all-threads")
VALUED = ("--limit", "--arena")


@dataclass
class Args:
    flags: Dict[str, bool] = field(default_factory=dict)
    values: Dict[str, str] = field(default_factory=dict)
    rest: List[str] = field(default_factory=list)

    def flag(self, name: str) -> bool:
        return self.flags.get(name, False)

    def value(self, name: str) -> Optional[str]:
        return self.values.get(name)


def split(text: str) -> List[str]:
    """Words separated by blanks (gdb expressions may hold quotes we must not interpret)."""
    return text.split()


def is_number(word: str) -> bool:
    try:
        int(word, 0)
        return True
    except ValueError:
        return word.isdigit()


def parse(command: str, text: str, flags: Sequence[str], valued: Sequence[str] = (),
          counted: Sequence[str] = ()) -> Args:
    """`counted`: options that take a number when one follows (heap chunk --dump [N])."""
    args = Args()
    words = split(text)
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, inline = word.partition("=")
        if word.startswith("--"):
            if name in counted:
                args.flags[name] = True
                if eq:
                    args.values[name] = inline
                elif i + 1 < len(words) and is_number(words[i + 1]):
                    i += 1
                    args.values[name] = words[i]
            elif name in flags and not eq:
                args.flags[name] = True
            elif name in valued:
                if eq:
                    args.values[name] = inline
                elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                    i += 1
                    args.values[name] = words[i]
                else:
                    raise HeapError(f"{name} needs a value; see help {command}")
            else:
                known = ", ".join(list(flags) + [f"{v} VALUE" for v in valued] +
                                  [f"{c} [N]" for c in counted]) or "none"
                raise HeapError(f"unknown option {word!r} for {command}; its options are: {known}")
        else:
            args.rest.append(word)
        i += 1
    if args.flag("--all-arenas") and args.value("--arena") is not None:
        raise HeapError(f"--arena and --all-arenas exclude each other; give one (see help {command})")
    return args


def parse_count(command: str, text: str, option: str = "--limit", what: str = "a number of chunks") -> int:
    try:
        n = int(text, 0) if not text.isdigit() else int(text, 10)
    except ValueError:
        raise HeapError(f"{option} wants {what}, not {text!r}; see help {command}") from None
    if n < 0:
        raise HeapError(f"{option} wants a number >= 0, not {n}")
    return n
