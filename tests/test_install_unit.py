"""python3 -m gdb_heap.install in-process (tests/test_install.py runs it and gdb for real): the
lines it adds and removes, idempotence, another copy's line replaced, and the one-line error."""

from __future__ import annotations

import os

from gdb_heap import install

MARKER = "# gdb_heap: added by python3 -m gdb_heap.install (--remove takes it out)"
INIT = os.path.join(os.path.dirname(os.path.abspath(install.__file__)), "init.py")


def test_init_path_is_the_packages_init():
    assert install.init_path() == INIT and os.path.isfile(INIT)


def test_install_adds_two_lines_once_and_remove_takes_them_out(tmp_path):
    gdbinit = str(tmp_path / "gdbinit")
    with open(gdbinit, "w") as f:
        f.write("set history save on\n")
    assert install.install(gdbinit) == \
        f"{gdbinit}: added `source {INIT}`; every gdb session now has the heap commands"
    with open(gdbinit) as f:
        assert f.read() == f"set history save on\n{MARKER}\nsource {INIT}\n"
    assert install.install(gdbinit) == f"{gdbinit} already sources {INIT}"
    with open(gdbinit) as f:
        assert f.read() == f"set history save on\n{MARKER}\nsource {INIT}\n"
    assert install.remove(gdbinit) == f"{gdbinit}: removed gdb_heap's line"
    with open(gdbinit) as f:
        assert f.read() == "set history save on\n"
    assert install.remove(gdbinit) == f"{gdbinit} has no line of gdb_heap's; nothing to remove"


def test_a_missing_gdbinit_is_created_and_removing_from_it_changes_nothing(tmp_path):
    gdbinit = str(tmp_path / "absent")
    assert install.remove(gdbinit).endswith("has no line of gdb_heap's; nothing to remove")
    assert not os.path.exists(gdbinit)
    install.install(gdbinit)
    with open(gdbinit) as f:
        assert f.read() == f"{MARKER}\nsource {INIT}\n"


def test_another_copys_line_is_replaced(tmp_path):
    gdbinit = str(tmp_path / "gdbinit")
    with open(gdbinit, "w") as f:
        f.write(f"{MARKER}\nsource /old/checkout/gdb_heap/init.py\nbreak main\n")
    install.install(gdbinit)
    with open(gdbinit) as f:
        assert f.read() == f"break main\n{MARKER}\nsource {INIT}\n"


def test_without_ours_keeps_every_other_line():
    lines = ["a", MARKER, "source /x/init.py", "b",
             MARKER, "set pagination off",  # a marker without its source line: the next line stays
             "source /y/init.py",  # a source line after no marker stays
             MARKER, "source /z/init.pyc",  # not init.py: stays
             MARKER, "  source /w/init.py",  # not at the line's start: stays
             MARKER]
    assert install.without_ours(lines) == ["a", "b", "set pagination off", "source /y/init.py",
                                           "source /z/init.pyc", "  source /w/init.py"]
    assert install.without_ours([MARKER, "x", "source /v/init.py"]) == ["x", "source /v/init.py"]
    assert install.without_ours(["source /u/init.py"]) == ["source /u/init.py"]  # no marker before it
    # one marker takes one source line: the next one stays
    assert install.without_ours([MARKER, "source /a/init.py", "source /b/init.py"]) == ["source /b/init.py"]


def test_main_installs_removes_and_names_the_file(tmp_path, capsys):
    gdbinit = str(tmp_path / "gdbinit")
    assert install.main(["--gdbinit", gdbinit]) == 0
    assert capsys.readouterr().out == f"{gdbinit}: added `source {INIT}`; every gdb session now has the heap commands\n"
    assert install.main(["--gdbinit", gdbinit, "--remove"]) == 0
    assert capsys.readouterr().out == f"{gdbinit}: removed gdb_heap's line\n"


def test_main_default_is_the_home_gdbinit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert install.main([]) == 0
    with open(tmp_path / ".gdbinit") as f:
        assert f.read() == f"{MARKER}\nsource {INIT}\n"
    assert capsys.readouterr().out.startswith(f"{tmp_path / '.gdbinit'}: added")


def test_an_unwritable_gdbinit_is_one_line_and_exit_1(tmp_path, capsys):
    gdbinit = str(tmp_path / "no" / "such" / "dir" / "gdbinit")
    assert install.main(["--gdbinit", gdbinit]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"gdb_heap.install: cannot change {gdbinit} (No such file or directory); "
                       "give another with --gdbinit\n")


def test_help_names_the_program_and_the_options(capsys, monkeypatch):
    import re

    import pytest
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit) as e:
        install.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python3 -m gdb_heap.install [-h] [--remove] [--gdbinit GDBINIT]")
    assert "Add gdb_heap to every gdb session of the user, or take it out again:" in text
    assert re.search(r"\n  --remove +take gdb_heap's line out again\n", text), text
    assert re.search(r"\n  --gdbinit GDBINIT +the file to change \(default: ~/.gdbinit\)\n", text), text
