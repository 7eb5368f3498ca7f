"""The TUI, driven with Textual's Pilot on the real demo model."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from ikv_local.chat import ChatSettings
from ikv_local.haystack import build
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions
from tui.app import IkvApp
from tui.chat_view import Said
from tui.memory_map import MapState, cell_kinds, counters, render_map

SMALL = OpenOptions(n_ctx=512)
GREEDY = ChatSettings(max_tokens=16, params=SamplingParams.greedy())
BRIEF = ChatSettings(max_tokens=6, params=SamplingParams.greedy())  # answers nobody reads
FILLER = build(40, [], [], seed=4).text.split(". ")
LONG_FILLER = build(90, [], [], seed=14).text.split(". ")  # few long turns roll the window
SIZE = (140, 40)
COUNT = "Count from 1 to 300: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # a long answer, greedily


# -- the map, without a model ------------------------------------------------------------

def test_cells_are_archived_then_hot_with_recalled_spans_marked():
    state = MapState(sink=1, archived=600, tokens=1000,
                     recalled=[{"start": 100, "end": 150, "score": 0.5, "source": "x", "text": ""}])
    kinds = cell_kinds(state, 10)
    assert kinds == ["archived", "recalled", "archived", "archived", "archived", "archived",
                     "hot", "hot", "hot", "hot"]
    assert cell_kinds(MapState(), 10) == []
    text = render_map(state, 13, 1)
    assert text.plain.count("█") == 2 + 10
    assert "600" in counters(MapState(archived=600, n_ctx=512, window_cells=256)).plain
    assert "50%" in counters(MapState(archived=600, n_ctx=512, window_cells=256)).plain


def test_a_number_at_the_start_of_an_answer_is_not_an_empty_list():
    from tui.chat_view import as_markdown

    assert as_markdown("191644.") == "191644\\."
    assert as_markdown("see\n2) this") == "see\n2\\) this"
    assert as_markdown("in 1999. Yes") == "in 1999. Yes"


# -- the app ---------------------------------------------------------------------------------

async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _send(pilot, text: str) -> None:
    box = pilot.app.query_one("#input")
    box.value = text
    await pilot.press("enter")
    await _settle(pilot)


@pytest.mark.slow
async def test_a_turn_streams_into_the_chat_and_the_memory_view_follows(demo_path):
    app = IkvApp("t", SMALL, BRIEF)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        assert app.session is not None and app.title == "ikv · t"
        await _send(pilot, "Please remember this: the vault code is 7316.")
        said = list(app.query(Said))
        assert [s.has_class("user") for s in said] == [True, False]
        assert app.state.turns == 1 and app.state.tokens > 0 and app.state.archived == 0
        # the window rolls: the map now shows archived cells, the counters follow
        i = 0
        while app.state.archived < 700:
            await _send(pilot, ". ".join(LONG_FILLER[i : i + 6]) + ".")
            i += 6
        kinds = cell_kinds(replace(app.state, recalled=[]), 60)
        assert kinds[0] == "archived" and kinds[-1] == "hot"
        assert "archived" in str(app.query_one("#legend").render())
        await _send(pilot, "What is the vault code?")
        assert any("7316" in s["text"] for s in app.state.recalled)
        assert "recalled" in cell_kinds(app.state, 200)
        spans = app.query_one("#spans")
        assert spans.option_count == len(app.state.recalled)
        spans.focus()
        await pilot.press("down")
        await pilot.pause()
        shown = str(app.query_one("#span-text").render())
        assert "chat, turn" in shown and "score" in shown
        # the input remembers what was sent
        app.query_one("#input").focus()
        await pilot.press("up")
        assert app.query_one("#input").value == "What is the vault code?"


@pytest.mark.slow
async def test_escape_stops_an_answer(demo_path):
    app = IkvApp("t", SMALL, ChatSettings(max_tokens=400, params=SamplingParams.greedy()))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        app.query_one("#input").value = COUNT
        await pilot.press("enter")
        answer = list(app.query(Said))[-1]
        for _ in range(200):  # until the answer is well under way
            await pilot.pause(0.05)
            if len(answer.source) > 40:
                break
        await pilot.press("escape")
        await _settle(pilot)
        assert app.session.history.turns[-1].stopped == "cancel"
        assert "[stopped]" in [str(n.render()) for n in app.query(".note")]


@pytest.mark.slow
async def test_sessions_new_rename_delete_and_theme(demo_path, ikv_home):
    app = IkvApp("first", SMALL, GREEDY)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        for key in "second":
            await pilot.press(key)
        await pilot.press("enter")
        await _settle(pilot)
        assert app.session.name == "second"
        assert {i.name for i in app.query_one("#sessions").children} == {"first", "second"}
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("Input").value = "renamed"
        await pilot.press("enter")
        await _settle(pilot)
        await _settle(pilot)
        assert app.session.name == "renamed" and (ikv_home / "sessions" / "renamed").is_dir()
        await pilot.press("f8")
        await pilot.pause()
        await pilot.click("#yes")
        await _settle(pilot)
        await _settle(pilot)
        assert not (ikv_home / "sessions" / "renamed").exists()
        assert app.session is not None and app.session.name.startswith("chat-")
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"


@pytest.mark.slow
async def test_ingest_a_file_then_ask_about_it(demo_path, tmp_path):
    from ikv_local.haystack import pass_key_needle

    key = pass_key_needle(9)
    path = tmp_path / "notes.txt"
    path.write_text(build(120, [key], [0.1], seed=9).text)
    app = IkvApp("doc", SMALL, GREEDY)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("Input").value = str(path)
        await pilot.press("enter")
        await _settle(pilot)
        notes = [str(n.render()) for n in app.query(".note")]
        assert any("read notes.txt" in n for n in notes)
        assert app.state.archived > 0
        await _send(pilot, key.question)
        assert any(key.answer in s["text"] and s["source"].endswith("notes.txt")
                   for s in app.state.recalled)


@pytest.mark.slow
async def test_retry_edit_undo_fork_and_search_from_the_keys_and_the_message_menu(demo_path):
    from ikv_local.chat import Chat
    from ikv_local.history import alternatives
    from ikv_local.session import Session, sessions_dir
    from tui.steer import Alternatives, MessageMenu, SearchResults

    lines = [". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(4)]
    app = IkvApp("t", SMALL, BRIEF)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        for line in lines[:3]:
            await _send(pilot, line)
        await _send(pilot, "A message typed by mistake about the purple lighthouse.")
        await pilot.press("ctrl+z")  # undo
        await _settle(pilot)
        assert [t.user for t in app.session.history.turns] == lines[:3]
        undone = (list(app.session.window.recent.tokens),
                  [int(t) for t in app.session.archive.records()["token"]])
        with Session("typed-right", replace(SMALL, create=True)) as s:  # typed without the mistake
            chat = Chat(s, BRIEF)
            for line in lines[:3]:
                chat.turn(line)
            assert undone == (list(s.window.recent.tokens),
                              [int(t) for t in s.archive.records()["token"]])
        assert [s.turn for s in app.query(Said)] == [1, 1, 2, 2, 3, 3]
        await pilot.press("f4")  # edit the last message
        box = app.query_one("#input")
        assert box.value == lines[2] and app.editing
        box.value = lines[3]
        await pilot.press("enter")
        await _settle(pilot)
        assert [t.user for t in app.session.history.turns] == [*lines[:2], lines[3]]
        await pilot.press("ctrl+r")  # retry
        await _settle(pilot)
        assert [a.why for a in alternatives(app.session.folder, 3)] == ["edit", "retry"]
        assert [s.turn for s in app.query(Said)] == [1, 1, 2, 2, 3, 3]
        await pilot.press("f6")  # the last turn's alternatives, paged
        await pilot.pause()
        assert isinstance(app.screen, Alternatives)
        assert "alternative 2 of 2" in str(app.screen.query_one("#meta").render())
        await pilot.press("right")
        assert "alternative 1 of 2" in str(app.screen.query_one("#meta").render())
        await pilot.press("escape")
        # the message menu: fork at turn 1
        await pilot.click(list(app.query(Said))[0])
        await pilot.pause()
        assert isinstance(app.screen, MessageMenu)
        options = app.screen.query_one("OptionList")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids == ["undo", "fork", "alternatives"]  # not the last turn: no retry or edit
        options.highlighted = ids.index("fork")
        await pilot.press("enter")
        await pilot.pause()
        app.screen.query_one("Input").value = "branch"
        await pilot.press("enter")
        await _settle(pilot)
        with Session("branch") as forked:
            assert [t.user for t in forked.history.turns] == lines[:1]
        assert len(app.session.history.turns) == 3
        # search over every session, from the box above the list
        app.query_one("#search").value = "purple lighthouse"
        app.query_one("#search").focus()
        await pilot.press("enter")
        await _settle(pilot)
        assert isinstance(app.screen, SearchResults)
        assert app.screen.hits and app.screen.hits[0].where == "chat, turn 4 (taken back: undo)"
    assert (sessions_dir() / "branch").is_dir()


# -- snapshots ---------------------------------------------------------------------------------

def _app(name: str) -> IkvApp:
    return IkvApp(name, SMALL, GREEDY)


async def _steady(pilot) -> None:
    """A blinking cursor would make the picture depend on the moment it is taken."""
    from textual.widgets import Input

    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


def test_snapshot_main_screen_of_a_book(snap_compare, book, ikv_home):
    shutil.copytree(book.home / "sessions" / "book", ikv_home / "sessions" / "book")

    async def opened(pilot) -> None:
        await _settle(pilot)
        await _steady(pilot)

    assert snap_compare(_app("book"), terminal_size=SIZE, run_before=opened)


def test_snapshot_light_theme(snap_compare, book, ikv_home):
    shutil.copytree(book.home / "sessions" / "book", ikv_home / "sessions" / "book")

    async def light(pilot) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+t")
        await _steady(pilot)

    assert snap_compare(_app("book"), terminal_size=SIZE, run_before=light)


@pytest.mark.parametrize("key", ["ctrl+n", "f8"], ids=["new_session_dialog", "delete_dialog"])
def test_snapshot_dialog(snap_compare, demo_path, key):
    async def asked(pilot) -> None:
        await _settle(pilot)
        await pilot.press(key)
        await pilot.pause()
        await _steady(pilot)

    assert snap_compare(_app("fresh"), terminal_size=SIZE, run_before=asked)
