"""/retry, /edit, /undo, /fork and `ikv sessions fork` through the real CLI (piped chat)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from ikv_local.haystack import build

pytestmark = pytest.mark.slow  # each test loads the model in child processes

FILLER = build(40, [], [], seed=6).text.split(". ")
LINES = [". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(10)]
CHAT = ("chat", "-c", "512", "-n", "8", "--temp", "0", "--json")


def window(name: str) -> tuple[list[int], list[int], list[tuple[int, str]]]:
    """A session's window tokens, archived token ids and turns, read from disk."""
    from ikv_local.session import OpenOptions, Session

    with Session(name, OpenOptions(writable=False)) as s:
        return (list(s.window.recent.tokens), [int(t) for t in s.archive.records()["token"]],
                [(t.n, t.user) for t in s.history.turns])


def before_last_answer(name: str) -> tuple[list[int], list[tuple[int, int, int | None]]]:
    """Every token up to the last turn's answer, and where each turn and its window began."""
    from ikv_local.branch import stream_slice
    from ikv_local.session import OpenOptions, Session

    with Session(name, OpenOptions(writable=False)) as s:
        last = s.history.turns[-1]
        cut = last.start + len(s.engine.tokenize(s.chat_format.user(last.user), special=True))
        return (stream_slice(s, 0, cut)["tokens"],
                [(t.n, t.start, t.window_from) for t in s.history.turns])


def test_undo_and_edit_in_a_piped_chat_leave_the_session_typed_right(ikv):
    mistake = "Typed by mistake: " + " ".join(LINES[6:9])
    script = "\n".join([*LINES[:5], mistake, "/undo", "Another mistake.", f"/edit {LINES[5]}",
                        "/alternatives 6", "/history 2"]) + "\n"
    done = ikv(*CHAT, "--session", "a", input=script)
    assert done.returncode == 0, done.stderr
    turns = [json.loads(line) for line in done.stdout.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5, 6, 6, 6]
    assert "took back turn 6" in done.stderr and "(undo," in done.stderr and "(edit," in done.stderr
    right = ikv(*CHAT, "--session", "b", input="\n".join(LINES[:6]) + "\n")
    assert right.returncode == 0, right.stderr
    assert window("a")[2] == window("b")[2]  # the same turns
    # every token before turn 6's answer, and the window's place at every turn (test_branch
    # says why the answer itself may part from the original at a near-tie)
    assert before_last_answer("a") == before_last_answer("b")


def test_bad_steering_is_one_line_and_changes_nothing(ikv):
    done = ikv(*CHAT, "--session", "a", input=LINES[0] + "\n")
    assert done.returncode == 0, done.stderr
    before = window("a")
    assert_one_line_error(ikv(*CHAT, "--session", "a", input="/undo 999\n"), 7, "has 1 turn")
    assert_one_line_error(ikv(*CHAT, "--session", "a", input="/undo two\n"), 7, "number of turns")
    assert_one_line_error(ikv(*CHAT, "--session", "a", input="/fork a\n"), 7, "already exists")
    assert_one_line_error(ikv("sessions", "fork", "a", "c", "--at-turn", "7"), 7, "past them")
    assert_one_line_error(ikv("sessions", "fork", "a", "a"), 7, "already exists")
    assert window("a") == before
    listed = ikv("sessions", "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["a"]


def test_fork_in_the_chat_and_at_a_turn_then_each_goes_its_own_way(ikv):
    done = ikv(*CHAT, "--session", "a", input="\n".join([*LINES[:4], "/fork f"]) + "\n")
    assert done.returncode == 0, done.stderr
    assert "forked session 'f' at turn 4" in done.stderr
    at = ikv("sessions", "fork", "a", "g", "--at-turn", "2", "--json")
    assert at.returncode == 0, at.stderr
    assert json.loads(at.stdout)["at_turn"] == 2
    for name, line in (("a", "The original hears about the red kite."),
                       ("f", "The first fork hears about the blue heron."),
                       ("g", "The second fork hears about the grey owl.")):
        assert ikv(*CHAT, "--session", name, input=line + "\n").returncode == 0
    turns = {name: window(name)[2] for name in "afg"}
    assert [n for n, _ in turns["a"]] == [1, 2, 3, 4, 5] and "kite" in turns["a"][-1][1]
    assert [n for n, _ in turns["f"]] == [1, 2, 3, 4, 5] and "heron" in turns["f"][-1][1]
    assert [n for n, _ in turns["g"]] == [1, 2, 3] and "owl" in turns["g"][-1][1]
    assert turns["a"][:4] == turns["f"][:4] and turns["a"][:2] == turns["g"][:2]
