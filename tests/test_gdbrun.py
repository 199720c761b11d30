"""The test harness's own parsing: a command's output apart from what gdb prints around it."""

import pytest

from tests.gdbrun import json_doc, json_docs, tool_text

# What gdb 16.3 printed inside `heap --json`'s capture on a core of the threaded sample.
GDB16_CORE = ("warning: Section `.reg-xstate/5891' in core file too small.\n"
              "warning: Section `.reg-xstate/5892' in core file too small.\n"
              '{"glibc": "2.36", "arenas": []}\n')


def test_json_doc_skips_gdbs_warnings():
    assert json_doc(GDB16_CORE) == {"glibc": "2.36", "arenas": []}


def test_json_docs_skip_gdbs_bracketed_lines():
    text = "Breakpoint 1 at 0x1139\n[Thread debugging using libthread_db enabled]\n{\"a\": 1}\n{\"b\": 2}\n"
    assert json_docs(text) == [{"a": 1}, {"b": 2}]
    with pytest.raises(AssertionError, match="expected one JSON document, found 2"):
        json_doc(text)


def test_tool_text_keeps_the_tools_own_warnings():
    text = GDB16_CORE + "heap: warning: tcache not found\nmain arena 0x7ffff7fa8c60\n"
    assert tool_text(text).splitlines() == ['{"glibc": "2.36", "arenas": []}', "heap: warning: tcache not found",
                                            "main arena 0x7ffff7fa8c60"]
