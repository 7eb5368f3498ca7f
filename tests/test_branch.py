"""Undo, retry, edit and fork on the real demo model: the window, the archive and the turn log
end exactly as the same conversation typed without the mistake would leave them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import counting_decodes, made_once_per_run

from ikv_local.branch import fork, plan_rewind
from ikv_local.chat import Chat, ChatSettings
from ikv_local.checkpoint import SessionError
from ikv_local.haystack import build
from ikv_local.history import alternatives
from ikv_local.paths import using_home
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session, sessions_dir

GREEDY = ChatSettings(max_tokens=6, params=SamplingParams.greedy())  # streams compared, not read
FILLER = build(40, [], [], seed=5).text.split(". ")
LINES = [". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(12)]


def state(s: Session) -> dict[str, object]:
    """Everything a session holds, by token id: window, archive, log."""
    w = s.window
    records = s.archive.records()
    return {
        "sink": list(w.sink_tokens),
        "recent": w.recent.to_dict(),
        "archived": w.archived,
        "records": [(int(r["position"]), int(r["token"]), int(r["role"]), int(r["segment"]))
                    for r in records],
        "turns": [(t.n, t.user, t.start, t.end, t.window_from) for t in s.history.turns],
        "stream_end": w.stream_end,
    }


def before_last_answer(s: Session) -> dict[str, object]:
    """`state` up to where the last turn's answer begins.

    The window's tokens are rebuilt exactly, but its cache values are decoded again (in
    blocks, at their final positions, where the original was decoded token by token and
    shifted), so a greedy answer may part from the original at a near-tie: seen once, "the
    map" against "the stone bridge". What came before the answer must be identical.
    """
    last = s.history.turns[-1]
    cut = last.start + len(s.engine.tokenize(s.chat_format.user(last.user), special=True))
    full = state(s)
    w = s.window
    first = w.archived + w.dropped
    return {
        **full,
        "recent": {k: v[: cut - first] for k, v in w.recent.to_dict().items()},
        "records": [r for r in full["records"] if r[0] < cut],  # type: ignore[attr-defined]
        "archived": None, "stream_end": None,
        "turns": [(t.n, t.user, t.start, t.window_from) for t in s.history.turns],
    }


@pytest.fixture(scope="session")
def typed(demo_path, tmp_path_factory) -> Path:
    """LINES[:10] typed one by one into a session (window 512), its folder kept after each
    turn as `after-K`: made once per run. The conversation typed right, for each test to
    start from or to compare with."""
    def make(root: Path) -> None:
        with using_home(root / "home"), Session("t", OpenOptions(create=True, n_ctx=512)) as s:
            chat = Chat(s, GREEDY)
            for k, line in enumerate(LINES[:10], 1):
                chat.turn(line)  # logged and checkpointed
                shutil.copytree(s.folder, root / f"after-{k}")
    return made_once_per_run(tmp_path_factory, "typed-turns", make)


def typed_copy(typed: Path, k: int, name: str) -> str:
    """Session `name` in this test's home: the first k LINES as typed, nothing taken back."""
    shutil.copytree(typed / f"after-{k}", sessions_dir() / name)
    return name


@pytest.mark.slow
def test_undo_across_a_roll_leaves_what_the_conversation_without_the_turns_would(typed):
    with Session(typed_copy(typed, 6, "b"), OpenOptions()) as s:
        six = state(s)
    with Session(typed_copy(typed, 10, "a"), OpenOptions()) as s:
        chat = Chat(s, GREEDY)
        assert s.window.archived > six["archived"]  # the turns taken back rolled the window
        taken = chat.undo(4)
        assert [t.n for t in taken] == [7, 8, 9, 10]
        after_undo = state(s)
    assert after_undo == six
    with Session("a", OpenOptions()) as s:  # what was saved is what was left
        assert state(s) == after_undo
        assert [a.turn.n for a in alternatives(s.folder)] == [7, 8, 9, 10]
        assert {a.why for a in alternatives(s.folder)} == {"undo"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo_path", "smollm_path"])
def test_an_undo_where_nothing_aged_keeps_the_cells_and_decodes_nothing(model, request, monkeypatch):
    """The cells of the turns kept were decoded beside the recall slot of their own turns;
    decoded again they would not see it. Where none aged since, they stay as they were."""
    path = request.getfixturevalue(model)
    with Session("a", OpenOptions(create=True, n_ctx=1024, model=str(path))) as s:
        chat, w = Chat(s, GREEDY), s.window
        first, _ = chat.turn("Please remember this: the vault code is 7316.")
        for line in LINES:  # until the first turn is archived and 64 tokens fit without aging
            chat.turn(line)
            if w.archived >= first.end and w.layout.recent_capacity - len(w.recent) >= 64:
                break
        chat.turn("What is the vault code?")
        assert w.slot_used  # a kept turn decoded beside what it recalled
        probe = s.engine.tokenize(" The last thing I said was")

        def next_logits() -> np.ndarray:
            at = s.window.next_pos
            s.engine.decode(probe, at)
            out = s.engine.logits()
            s.engine.seq_rm(0, at, -1)
            return out

        w.clear_slot()  # as the undo leaves it (the next turn's recall refills it)
        before = next_logits()
        archived, recent = w.archived, list(w.recent.tokens)
        chat.turn("Thanks.")
        assert w.archived == archived, "the turn to take back aged the window"
        decoded = counting_decodes(s.engine, monkeypatch)
        chat.undo(1)
        assert decoded == [] and s.window.recent.tokens == recent
        np.testing.assert_allclose(next_logits(), before, atol=1e-4)


@pytest.mark.slow
def test_edit_and_retry_answer_as_the_conversation_typed_right(typed):
    with Session(typed_copy(typed, 7, "a"), OpenOptions()) as s:
        chat = Chat(s, GREEDY)
        archived = s.window.archived
        chat.turn("Wrong words, typed by mistake: " + " ".join(LINES[8:11]))
        assert s.window.archived > archived  # the mistake rolled the window
        turn, _ = chat.edit(LINES[7])
        assert turn.n == 8
        edited = before_last_answer(s)
        retried, _ = chat.retry()
        assert retried.n == 8 and retried.user == LINES[7]
        assert before_last_answer(s) == edited
        answers = [t.answer for t in s.history.turns[:-1]]
        alts = alternatives(s.folder, 8)
    assert [a.why for a in alts] == ["edit", "retry"]
    assert alts[0].turn.user.startswith("Wrong words") and alts[1].turn.user == LINES[7]
    with Session(typed_copy(typed, 8, "b"), OpenOptions()) as s:
        assert before_last_answer(s) == edited
        assert [t.answer for t in s.history.turns[:-1]] == answers


def test_nothing_to_take_back_and_too_many_are_refused_and_change_nothing(demo_path):
    with Session("a", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, GREEDY)
        with pytest.raises(SessionError, match="no turn to retry"):
            chat.retry()
        chat.turn(LINES[0])
        before = state(s)
        with pytest.raises(SessionError, match="has 1 turn"):
            chat.undo(999)
        with pytest.raises(SessionError, match="number of turns"):
            chat.undo(0)
        assert state(s) == before
        with pytest.raises(SessionError, match="already exists"):
            chat.fork("a")


@pytest.mark.slow
def test_fork_at_a_turn_then_both_go_their_own_way(typed):
    with Session(typed_copy(typed, 3, "g"), OpenOptions()) as s:
        three = state(s)
    with Session(typed_copy(typed, 8, "a"), OpenOptions()) as s:
        original = state(s)
    done = fork("a", "f", at_turn=3)
    assert (done.at_turn, done.turns) == (3, 8)
    with Session("a", OpenOptions()) as s:
        assert state(s) == original  # the original is untouched
        assert not alternatives(s.folder)
        Chat(s, GREEDY).turn("Only the original hears this sentence about the red kite.")
    with Session("f", OpenOptions()) as s:
        assert state(s) == three  # exactly turns 1-3
    with Session("f", OpenOptions()) as s:
        turn, _ = Chat(s, GREEDY).turn("Only the fork hears this one about the blue heron.")
        assert turn.n == 4
        text = s.engine.detokenize(s.window.recent.tokens)
        assert "heron" in text and "kite" not in text
        assert not (s.folder / "alternatives.jsonl").exists()
    with Session("a", OpenOptions()) as s:
        assert len(s.history) == 9
        assert "heron" not in s.engine.detokenize(s.window.recent.tokens)
    assert not [p for p in sessions_dir().iterdir() if p.name.startswith(".fork-")]


def test_fork_refuses_an_existing_name_and_a_turn_past_the_end(demo_path):
    with Session("a", OpenOptions(create=True, n_ctx=512)) as s:
        Chat(s, GREEDY).turn(LINES[0])
    with Session("b", OpenOptions(create=True, n_ctx=512)):
        pass
    with pytest.raises(SessionError, match="already exists"):
        fork("a", "b")
    with pytest.raises(SessionError, match="past them"):
        fork("a", "c", at_turn=5)
    assert not (sessions_dir() / "c").exists()
    whole = fork("a", "c")
    assert whole.at_turn == 1
    with Session("c", OpenOptions()) as s:
        assert len(s.history) == 1


@pytest.mark.slow
def test_a_document_after_the_point_is_not_taken_back(demo_path, tmp_path):
    from ikv_local.ingest import ingest

    with Session("a", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, GREEDY)
        chat.turn(LINES[0])
        doc = tmp_path / "d.txt"
        doc.write_text(" ".join(LINES[1:4]))
        ingest(s, [doc])
        chat.turn(LINES[4])
        with pytest.raises(SessionError, match="document was read"):
            plan_rewind(s, 0)
        assert plan_rewind(s, 1).keep == 1
        positions = np.asarray(s.archive.records()["position"])
        assert (np.diff(positions) == 1).all()


@pytest.mark.slow
def test_a_log_from_before_window_from_still_goes_back_to_the_same_stream(typed):
    """Turn log format 1 did not say where the window began; the rebuilt window then holds the
    same stream split at a place of its own choosing, with room for an answer."""
    import json

    from ikv_local.branch import stream_slice
    from ikv_local.history import _digest

    log = sessions_dir() / typed_copy(typed, 8, "a") / "turns.jsonl"
    lines = []
    for raw in log.read_bytes().splitlines():
        data = json.loads(raw.split(b" ", 1)[1])
        del data["format"], data["window_from"]
        body = json.dumps(data)
        lines.append(f"{_digest(body)} {body}\n")
    log.write_text("".join(lines))
    with Session("a", OpenOptions()) as s:
        assert s.history.turns[-1].window_from is None
        Chat(s, GREEDY).undo(3)
        w = s.window
        held = stream_slice(s, 0, w.stream_end)["tokens"]
        assert len(w.recent) <= w.layout.recent_capacity - w.layout.block
    with Session(typed_copy(typed, 5, "b"), OpenOptions()) as s:
        assert stream_slice(s, 0, s.window.stream_end)["tokens"] == held
