"""Chat turns through the window, on the real demo model."""

from __future__ import annotations

import shutil
import threading

import pytest

from ikv_local.chat import Chat, ChatSettings, memory, span_origin
from ikv_local.haystack import build
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session, sessions_dir

GREEDY = ChatSettings(max_tokens=16, params=SamplingParams.greedy())
BRIEF = ChatSettings(max_tokens=6, params=SamplingParams.greedy())  # turns that only fill the window
FILLER = build(40, [], [], seed=3).text.split(". ")


def _window_text(session: Session) -> str:
    w = session.window
    return session.engine.detokenize(w.sink_tokens + w.recent.tokens, special=True)


def test_the_window_holds_the_conversation_as_the_format_renders_it(demo_path):
    with Session("c", OpenOptions(create=True, n_ctx=512, system="Be brief.")) as s:
        chat = Chat(s, GREEDY)
        fmt = s.chat_format
        turns = [chat.turn(q)[0] for q in ("Hello!", "Name three colours.", "And two fruits?")]
        expect = fmt.system("Be brief.") + "".join(
            fmt.user(t.user) + t.answer + fmt.assistant_after for t in turns)
        assert _window_text(s).removeprefix("<bos>") == expect
        assert [t.n for t in turns] == [1, 2, 3]
        assert turns[0].start == 0 and turns[1].start == turns[0].end
        assert turns[-1].end == s.window.stream_end
        # a stop string never stays in the window, even when the model began it
        assert all("\nUser:" not in t.answer for t in turns)


@pytest.mark.slow
def test_a_fact_from_a_turn_that_left_the_window_is_recalled(demo_path):
    with Session("c", OpenOptions(create=True, n_ctx=512)) as s:
        Chat(s, GREEDY).turn("Please remember this: the vault code is 7316.")
        chat = Chat(s, BRIEF)
        i = 0
        while s.window.archived < 700:  # the window rolls twice
            chat.turn(". ".join(FILLER[i : i + 3]) + ".")
            i += 3
        assert s.window.archived > s.window.layout.n_ctx
        turn, _ = Chat(s, GREEDY).turn("What is the vault code?")
        found = [sp for sp in turn.recalled if "7316" in sp["text"]]
        assert found and span_origin(s, found[0]) == "chat, turn 1"
        assert "7316" in turn.answer
        m = memory(s)
        assert m.turns == len(s.history) and m.archived == s.window.archived
        assert m.window_cells <= m.n_ctx and m.tokens == m.archived + m.recent


@pytest.mark.slow
def test_a_resumed_session_continues_exactly(demo_path):
    with Session("a", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, BRIEF)
        for i in range(8):
            chat.turn(". ".join(FILLER[4 * i : 4 * i + 4]) + ".")
        assert s.window.archived > 0
        tokens = list(s.window.recent.tokens)
    shutil.copytree(sessions_dir() / "a", sessions_dir() / "b")
    answers = []
    for name in ("a", "b"):
        with Session(name, OpenOptions()) as s:
            assert s.window.recent.tokens == tokens and len(s.history) == 8
            turn, _ = Chat(s, GREEDY).turn("What did I say about the garden?")
            answers.append((turn.n, turn.answer, turn.recalled))
    assert answers[0] == answers[1] and answers[0][0] == 9


def test_a_new_system_prompt_rebuilds_the_sink_and_keeps_the_recent_tokens(demo_path):
    with Session("c", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, GREEDY)
        chat.turn("Hello!")
        recent = list(s.window.recent.tokens)
        s.set_system("You are a pirate.")
        assert s.window.recent.tokens == recent
        assert _window_text(s).removeprefix("<bos>").startswith("You are a pirate.\n\nUser: Hello!")
        s.save()
        chat.turn("Who are you?")
    with Session("c", OpenOptions()) as s:
        assert s.system == "You are a pirate." and len(s.history) == 2
    with Session("c", OpenOptions(system="")) as s:  # an empty one removes it
        assert s.window.layout.sink == 1 and len(s.window.recent) > len(recent)


def test_cancel_stops_the_answer_and_keeps_the_session_usable(demo_path):
    with Session("c", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, ChatSettings(max_tokens=-1, params=SamplingParams.greedy()))
        cancel = threading.Event()
        seen: list[str] = []

        def stop_after_some(text: str) -> None:
            seen.append(text)
            if len(seen) >= 5:
                cancel.set()

        turn, _ = chat.turn("Tell me a long story.", on_text=stop_after_some, cancel=cancel)
        assert turn.stopped == "cancel" and 5 <= turn.tokens <= 8
        assert turn.answer.startswith("".join(seen))
        turn, _ = Chat(s, GREEDY).turn("Thanks.")
        assert turn.n == 2 and turn.stopped in {"eog", "stop", "limit"}


def test_a_turn_logged_after_the_last_checkpoint_is_cut(demo_path):
    from ikv_local.history import History, Turn

    with Session("c", OpenOptions(create=True, n_ctx=512)) as s:
        Chat(s, GREEDY).turn("Hello!")
    History(sessions_dir() / "c").append(Turn(2, "lost", "lost", 0, 0))  # no checkpoint after
    with pytest.warns(UserWarning, match="1 turn"), Session("c", OpenOptions()) as s:
        assert len(s.history) == 1
    assert len(History(sessions_dir() / "c")) == 1


@pytest.mark.slow
def test_a_question_as_long_as_allowed_is_answered_in_a_full_window(demo_path):
    """The query is decoded beside the sink while the window holds its cells; a long question
    in a full window once found no free cell (EngineError: no room in the KV cache)."""
    from ikv_local.ask import question_cap

    with Session("c", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, BRIEF)
        i = 0
        while s.window.cells + 128 <= s.window.layout.n_ctx:  # 128: a batch of the query
            chat.turn(". ".join(FILLER[i : i + 3]) + ".")
            i += 3
        words = " ".join(FILLER).split()
        cap = question_cap(s.window.layout)
        n = len(words)
        while len(s.engine.tokenize(s.chat_format.user(" ".join(words[:n])), special=True)) > cap:
            n -= 5
        question = " ".join(words[:n])
        assert len(s.engine.tokenize(question)) > s.window.layout.slot  # more than the slot frees
        turn, _ = Chat(s, GREEDY).turn(question)
        assert turn.recalled and s.window.cells <= s.window.layout.n_ctx
