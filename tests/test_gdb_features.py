"""The heap commands inside gdb's own machinery: MI (-interpreter-exec console), the pager
(set height, in a session on a pseudo-terminal, as at a real prompt), set logging, and pipe.
Each compares with what gdb itself says (MI's reading of main_arena, the lines of the same
command without the machinery)."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import tempfile
from typing import List

import pytest

from tests.gdbrun import (ANSI, CONFIG, GDB, INIT, ROOT, TIMEOUT, gdb_batch, host_only, json_doc, no_traceback, sample,
                          tool_text)

pytestmark = host_only("gdb's MI, pipe, logging and pager")

PAGER = "--Type <RET> for more, q to quit, c to continue without paging--"
PROMPT = "(gdb) "


def lines_of(text: str) -> List[str]:
    """The lines a command printed, without gdb's own and without trailing blanks (a coloured
    line pads its state column inside the colour)."""
    return [line.rstrip() for line in tool_text(text).splitlines() if line.strip()]


# -- MI ---------------------------------------------------------------------------------------------

def mi_stream(records: List[str], prefix: str) -> str:
    """The text of MI stream records (~"..." console, &"..." log): C strings, decoded."""
    return "".join(json.loads(r[1:]) for r in records if r.startswith(prefix))


def test_mi_interpreter_exec_console():
    if not CONFIG.symbols or CONFIG.static:
        pytest.skip("the truth here is MI's own reading of main_arena (libc's debug info)")
    argv = [a for a in GDB if a != "-batch"] + ["-i=mi", "-ex", f"source {INIT}", sample("all_bins")]
    mi = "\n".join(["-break-insert checkpoint", "-exec-arguments > /dev/null", "-exec-run",
                    '-interpreter-exec console "heap chunks"', '-interpreter-exec console "heap top --json"',
                    '-data-evaluate-expression "(unsigned long) main_arena.top"',
                    '-interpreter-exec console "heap chunk 0"', '-data-evaluate-expression "$heap_is_free(0)"',
                    "-gdb-exit"]) + "\n"
    p = subprocess.run(argv, input=mi, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    # Split the output at each command's result record (^done / ^error), after the stop.
    blocks, current = [], []
    for line in p.stdout.splitlines()[p.stdout.splitlines().index(next(
            x for x in p.stdout.splitlines() if x.startswith("*stopped"))) + 1:]:
        current.append(line)
        if line.startswith(("^done", "^error")):
            blocks.append(current)
            current = []
    chunks, top, truth, bad, is_free = blocks[:5]
    text = mi_stream(chunks, "~")
    assert chunks[-1] == "^done" and re.search(r"^0x[0-9a-f]+ +0x[0-9a-f]+ +0x[0-9a-f]+ P", text, re.M), text
    assert "free tcache[" in text and not ANSI.search(text)  # MI's console is no terminal: no colour
    top_doc = json.loads(mi_stream(top, "~"))
    value = re.search(r'value="(\d+)"', truth[-1])
    assert value and top_doc["address"] == int(value.group(1))
    assert bad[-1].startswith('^error,msg="heap: ') and mi_stream(bad, "&").count("\n") == 1
    assert is_free[-1] == '^done,value="0"'
    no_traceback(p.stdout + p.stderr)


# -- pipe and set logging ---------------------------------------------------------------------------

def test_pipe_and_logging():
    with tempfile.TemporaryDirectory(prefix="gdb_heap_test.") as tmp:
        log = os.path.join(tmp, "gdb.log")
        logging_on = ('python gdb.execute("set logging enabled on" if int(gdb.VERSION.split(".")[0]) >= 12 '
                      'else "set logging on")')  # gdb 10 and 11 know only the older spelling
        logging_off = logging_on.replace(" on\"", " off\"")
        r = gdb_batch(["break checkpoint", "run > /dev/null", "set height 24", "set style enabled on",
                       "echo @@ plain\\n", "set style enabled off", "heap chunks", "set style enabled on",
                       "echo @@ pipe\\n", "pipe heap chunks | grep free",
                       f"set logging file {log}", "set logging overwrite on", "set logging redirect on",
                       logging_on, "heap chunks", "heap top --json", logging_off, "echo @@ end\\n"],
                      sample("all_bins"))
        with open(log) as f:
            logged = f.read()
    no_traceback(r.stdout + r.stderr)
    plain = lines_of(r.stdout.split("@@ plain\n")[1].split("@@ pipe\n")[0])
    piped = lines_of(r.stdout.split("@@ pipe\n")[1].split("@@ end")[0])
    # pipe: grep saw exactly the lines of the plain output that say free, and no colour
    # (pipe captures the output as batch mode does, whatever the session's style).
    assert piped == [line for line in plain if "free" in line] and len(piped) > 5
    assert not any(ANSI.search(line) for line in piped)
    # logging with redirect: the file holds the command's output and nothing reached stdout.
    logged_lines = lines_of(logged)
    assert not ANSI.search(logged)  # gdb writes no escapes into its log file
    assert logged_lines[:len(plain)] == plain
    assert json_doc("\n".join(logged_lines[len(plain):]))["address"] > 0
    assert "@@ end" in r.stdout and r.stdout.split("@@ end")[0].count("heap top") == 0


# -- the pager, at a prompt on a pseudo-terminal -------------------------------------------------------

class Terminal:
    """gdb on a pseudo-terminal: its pager and its prompt work as for a user."""

    def __init__(self, program: str) -> None:
        argv = [a for a in GDB if a != "-batch"] + ["-ex", f"source {INIT}", program]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: gdb, with the terminal as its stdin and stdout
            os.chdir(ROOT)
            # As a user's shell starts it: a CI job started in the background (`cmd &` without job
            # control) ignores SIGINT, and gdb 10 keeps an ignored SIGINT ignored (Ctrl-C does nothing).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        self.out = ""

    def until(self, marker: str) -> str:
        """Everything gdb writes up to the next `marker` (at most TIMEOUT seconds: never a hang)."""
        start = len(self.out)
        while marker not in self.out[start:]:
            ready, _, _ = select.select([self.fd], [], [], TIMEOUT)
            if not ready:
                raise AssertionError(f"gdb never wrote {marker!r}:\n{self.out[-3000:]}")
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"gdb ended before {marker!r}:\n{self.out[-3000:]}")
            self.out += data.decode(errors="replace")
        end = self.out.index(marker, start) + len(marker)
        text, self.out = self.out[start:end], self.out[:start] + self.out[end:]
        return text

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def close(self) -> None:
        os.write(self.fd, b"kill\ny\nquit\n")
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def clean(text: str) -> List[str]:
    """Lines as the terminal shows them, without bracketed-paste codes and the tool's notes
    (`heap: warning: ...`, on stderr: the batch session's stdout has none)."""
    text = re.sub(r"\x1b\[\?2004[hl]", "", text).replace("\r", "")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("heap: warning: ")]


def without_preview(lines: List[str]) -> List[str]:
    """The chunk lines' address, user pointer, size and flags: not their preview (a tcache key is
    random in every run, and the preview narrows to the terminal's width)."""
    return [" ".join(line.split()[:4]) for line in lines]


def test_pager_pages_and_quits():
    plain = lines_of(gdb_batch(["break checkpoint", "run > /dev/null", "heap chunks"], sample("all_bins")).stdout)
    plain = plain[plain.index(next(line for line in plain if line.startswith("chunk "))):]
    t = Terminal(sample("all_bins"))
    try:
        t.until(PROMPT)
        for command in ("set style enabled off", "break checkpoint", "run > /dev/null", "set height 10",
                        "set pagination on"):
            t.send(command)
            t.until(PROMPT)
        t.send("heap chunks")
        first = clean(t.until(PAGER))
        t.send("c")  # continue without paging
        rest = clean(t.until(PROMPT))
        t.send("heap chunks")
        t.until(PAGER)
        t.send("q")  # quit at the pager: the command ends cleanly, the prompt comes back
        after_quit = clean(t.until(PROMPT))
    finally:
        t.close()
    page = first[first.index("heap chunks") + 1:-1]  # the command's echo, then lines, then the pager prompt
    assert 0 < len(page) <= 10 and without_preview(page) == without_preview(plain[:len(page)])
    got = page + [line for line in rest if line != "c" and not line.startswith(PROMPT.strip())]
    assert without_preview(got) == without_preview(plain)  # every line once, in order, across the pager's stop
    assert after_quit[0] == "q" and any(line.startswith("heap: interrupted") or "Quit" in line for line in after_quit)
    no_traceback("\n".join(first + rest + after_quit))
