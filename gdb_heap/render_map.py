"""`heap map`'s text: chunks laid out in memory, word by word.

Each line is one row of memory (two words on 64-bit, four on 32-bit: 16 bytes, as x/2gx
shows it) after a marker column: `+` starts a chunk, `|` goes on inside it, `:` stands for the
rows left out of a long chunk.  Chunks alternate between two colours, their header words
underlined; without colour the markers keep the boundaries readable.  Notes say each
chunk's size and state and where a free chunk's links point.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional

from .model import state_text
from .render import addr, ascii_text, fit, flags_text, visible_len, word_text, words_of
from .style import Style
from .views import Link, MapView

NOTE_ROOM = 24  # columns kept for an inline note before the ASCII column is dropped


def link_note(link: Link, name: Callable[[int], str]) -> str:
    """`fd: chunk 0x...`, `next reveals 0x...: chunk 0x...+0x10 (free tcache[0])`."""
    value = link.value
    meaning = name(value) or ("end of list" if value == 0 else addr(value))
    if link.name == "key":
        return "key (tcache_key)" if not name(value) else f"key: {meaning}"
    if link.revealed is not None:
        return f"{link.name} reveals {addr(value)}: {meaning}"
    return f"{link.name}: {meaning}"


def map_lines(view: MapView, style: Style, name: Callable[[int], str], size_sz: int, order: str = "little",
              width: Optional[int] = None) -> Iterator[str]:
    per = 16 // size_sz * size_sz
    aw = 14 if size_sz == 8 else 10
    n = per // size_sz
    base = 3 + aw + n * (2 + 2 * size_sz) + (n - 1)  # marker, address, words
    with_ascii = width is None or width >= base + 1 + per + 2 + NOTE_ROOM
    d0, d1 = style.codes("dim")
    for i, c in enumerate(view.chunks):
        role = "top" if c.state == "top" else f"map{i % 2}"
        header_role = "top_header" if c.state == "top" else f"map{i % 2}_header"
        notes: Dict[int, List[str]] = {0: [f"{c.size:#x} {flags_text(c.size_field)} "
                                           f"{state_text(c.state, c.bin, c.bin_index)}"]}
        for link in c.links:
            notes.setdefault((link.address - c.address) // per * per, []).append(link_note(link, name))
        rows = [(off, c.head[off:off + per]) for off in range(0, len(c.head), per)]
        if c.tail:
            rows.append((-1, b""))
            rows.append((c.size - per, c.tail))
        if not rows:
            rows = [(0, b"")]
        for off, data in rows:
            if off < 0:
                left = c.size - per - len(c.head)
                yield style(role, ":") + f" {'':<{aw}} " + style("dim", f"... {left:#x} bytes ...")
                continue
            words = words_of(data, size_sz, order)
            texts = [style(header_role if off + k * size_sz < 2 * size_sz else role, word_text(w, size_sz))
                     for k, w in enumerate(words)] or ["(not readable)"]
            line = f"{style(role, '+' if off == 0 else '|')} {c.address + off:<#{aw}x} {' '.join(texts)}"
            if with_ascii and data:
                line += f"  {ascii_text(data)}"
            inline = ", ".join(notes.get(off, []))
            if not inline or width is None or visible_len(line) + 2 + len(inline) <= width:
                yield f"{line}  {d0}{inline}{d1}" if inline else line
                continue
            yield line
            for note in notes[off]:  # each on a line of its own, under the words
                for part in fit(" " * (aw + 3) + note, width):
                    yield style(role, "|") + style("dim", part[1:])
    if view.more is not None:
        yield style("dim", f"(more: heap map {addr(view.more)} goes on)")
    if not view.chunks:
        yield "no chunks there"
