"""Answers from a session on the real model: recall brings back what the window lost."""

from __future__ import annotations

import pytest

from ikv_local.ask import ask
from ikv_local.session import OpenOptions, Session


@pytest.fixture
def session(book, monkeypatch):
    monkeypatch.setenv("IKV_HOME", str(book.home))
    with Session("book", OpenOptions(writable=False)) as s:
        yield s


def test_a_fact_from_before_the_window_rolled_is_answered_with_recall_not_without(session, book):
    key = book.needles[0]
    assert session.window.archived > 2000  # the fact left the window long ago
    with_recall = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=8)
    assert key.answer in with_recall.text, with_recall.text
    assert any(key.answer in s.text for s in with_recall.recalled)
    assert with_recall.recall_seconds > 0
    without = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=8,
                  recall=False)
    assert key.answer not in without.text
    assert without.recalled == [] and session.window.slot_used == 0


def test_ask_leaves_the_session_as_it_was(session, book):
    before = (session.window.archived, list(session.window.recent.tokens))
    files = {p.name: p.stat().st_mtime_ns for p in (book.home / "sessions" / "book").rglob("*")
             if p.is_file() and p.name != ".lock"}
    ask(session, "What happened at the harbour?", max_tokens=300)  # long enough to roll
    after = {p.name: p.stat().st_mtime_ns for p in (book.home / "sessions" / "book").rglob("*")
             if p.is_file() and p.name != ".lock"}
    assert after == files
    assert session.window.archived == before[0]


def test_plain_prompt_answers_stop_before_a_new_question(session):
    a = ask(session, "What is the pass key?", max_tokens=64)
    assert "Question:" not in a.text and "\nUser:" not in a.text
    assert a.tokens <= 64 and a.window_tokens <= session.window.layout.n_ctx


def test_recall_every_n_tokens_refreshes_the_slot(session, book):
    key = book.needles[0]
    a = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=24, recall_every=8)
    assert a.recalled and a.tokens >= 8


def test_an_answer_ends_where_the_model_starts_copying_the_slot_framing(session):
    from ikv_local.ask import respond
    from ikv_local.recall import SLOT_FOOTER

    marker = SLOT_FOOTER.strip()
    start = len(session.window.recent)
    prompt = "".join(f"\n{w} {marker}" for w in ("one", "two", "three", "four", "five")) + "\nsix"
    try:
        got = respond(session, "six", prompt, (), recall=False, max_tokens=16)
    finally:
        session.window.truncate(start)
    assert got.stopped == "stop" and "(end" not in got.text, got.text


def test_slot_max_fills_only_that_much_of_the_slot(session, book):
    from ikv_local.ask import recall_spans
    from ikv_local.recall import RecallSettings

    key = book.needles[0]
    whole, _ = recall_spans(session, key.question, RecallSettings())
    small, spans = recall_spans(session, key.question, RecallSettings(slot_max=96))
    assert len(whole) > 96 >= len(small) > 0
    assert any(key.answer in s.text for s in spans)  # the best span still comes first
