"""`ikv sessions` as a user runs it: separate processes, clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures


def test_sessions_list_show_rename_rm(ikv, book, ikv_home):
    shutil.copytree(book.home / "sessions" / "book", ikv_home / "sessions" / "book")
    run = ikv("sessions", "list", "--json")
    assert run.returncode == 0, run.stderr
    (info,) = json.loads(run.stdout)
    assert info["name"] == "book" and info["n_ctx"] == 1024 and info["documents"] == 1
    assert info["archived_tokens"] > 2000 and info["disk_bytes"] > 104 * info["archived_tokens"]
    shown = json.loads(ikv("sessions", "show", "book", "--json").stdout)
    assert Path(shown["documents"][0]["path"]).name == "book.txt"
    assert "book" in ikv("sessions", "list").stdout
    assert_one_line_error(ikv("sessions", "rm", "book"), 2, "--yes")  # stdin is not a terminal
    from ikv_local.session import OpenOptions, Session

    with Session("book", OpenOptions(writable=False)):
        assert_one_line_error(ikv("sessions", "rm", "book", "--yes"), 7, "in use")
        assert_one_line_error(ikv("sessions", "rename", "book", "novel"), 7, "in use")
    assert_one_line_error(ikv("sessions", "rename", "book", "a/b"), 7, "plain names")
    assert ikv("sessions", "rename", "book", "novel").returncode == 0
    assert [i["name"] for i in json.loads(ikv("sessions", "list", "--json").stdout)] == ["novel"]
    assert ikv("sessions", "rename", "novel", "book").returncode == 0
    assert ikv("sessions", "rm", "book", "--yes").returncode == 0
    assert not (ikv_home / "sessions" / "book").exists()
    assert json.loads(ikv("sessions", "list", "--json").stdout) == []
    assert_one_line_error(ikv("sessions", "show", "book"), 7, "no session named")


def test_sessions_list_shows_a_long_name_in_full_in_a_narrow_terminal_and_plain_when_piped(
        ikv, folder):
    import re

    long = "bar-chart-of-quarterly-results-2026"
    assert ikv("sessions", "rename", "m", long).returncode == 0
    piped = ikv("sessions", "list").stdout.splitlines()
    assert piped[0].split("\t")[:3] == ["session", "model", "window"]
    row = piped[1].split("\t")
    assert row[0] == long and row[2] == "512" and len(row) == 9  # plain numbers, no commas
    for width in ("80", "160"):
        run = ikv("sessions", "list", env={"FORCE_COLOR": "1", "COLUMNS": width})
        shown = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
        assert long in shown and "…" not in shown, shown
        assert "archived" in shown and "512" in shown
