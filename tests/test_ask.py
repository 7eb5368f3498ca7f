"""Answers from a session on the real model: recall brings back what the window lost."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from ikv_local.ask import ask
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session


@pytest.fixture
def session(book, monkeypatch):
    monkeypatch.setenv("IKV_HOME", str(book.home))
    with Session("book", OpenOptions(writable=False)) as s:
        yield s


@pytest.mark.slow
def test_a_fact_from_before_the_window_rolled_is_answered_with_recall_not_without(session, book):
    key = book.needles[0]
    assert session.window.archived > 2000  # the fact left the window long ago
    with_recall = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=8)
    assert key.answer in with_recall.text, with_recall.text
    assert any(key.answer in s.text for s in with_recall.recalled)
    assert with_recall.recall_seconds > 0
    lent: list[int] = []
    without = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=8,
                  recall=False, on_text=lambda _: lent.append(session.window.lent))
    assert key.answer not in without.text
    assert lent and set(lent) == {0}  # nothing recalled, nothing lent: llama.cpp's own window
    assert without.recalled == [] and session.window.slot_used == 0


@pytest.mark.slow
def test_ask_leaves_the_session_as_it_was(session, book):
    window = session.window
    meta, state = window.snapshot()  # a copy of the bookkeeping, not the window's live lists
    files = {p.name: p.stat().st_mtime_ns for p in (book.home / "sessions" / "book").rglob("*")
             if p.is_file() and p.name != ".lock"}
    rolled = []  # the tokens aged out of the window, at each piece of the answer
    # the question rolls the full window; the answer runs past the headroom and rolls it
    # again (at its 148th piece here), and all of it must be put back
    ask(session, "Write a very long story about the harbour.", max_tokens=200,
        answer_prefix=" Once upon a time", params=SamplingParams(temperature=0.8, seed=1),
        on_text=lambda _: rolled.append(window.dropped - meta.dropped))
    assert rolled[-1] > rolled[0] > 0, "the answer never rolled the window; nothing was put back"
    after = {p.name: p.stat().st_mtime_ns for p in (book.home / "sessions" / "book").rglob("*")
             if p.is_file() and p.name != ".lock"}
    assert after == files
    now, now_state = window.snapshot()
    assert {k for k, v in meta.to_dict().items() if now.to_dict()[k] != v} == set()
    assert now_state == state  # llama.cpp's state, byte for byte
    ask(session, "Who are you?", max_tokens=4)  # no roll: truncated back, slot cleared
    now, now_state = window.snapshot()
    assert now == meta and now_state == state


def test_plain_prompt_answers_stop_before_a_new_question(session):
    a = ask(session, "What is the pass key?", max_tokens=64)
    assert "Question:" not in a.text and "\nUser:" not in a.text
    assert a.tokens <= 64 and a.window_tokens <= session.window.layout.n_ctx


@pytest.mark.slow
def test_recall_every_n_tokens_refreshes_the_slot(session, book, monkeypatch):
    key = book.needles[0]
    fills: list[list[int]] = []
    fill = session.window.fill_slot
    monkeypatch.setattr(session.window, "fill_slot", lambda t: (fills.append(list(t)), fill(t)))
    once = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=24)
    assert once.recalled and fills == []  # recall_every=0: beside the question, no slot
    a = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=24, recall_every=8)
    assert a.recalled and a.tokens > 8, a.text
    assert len(fills) == 1 + (a.tokens - 1) // 8  # in the slot, again after every 8 tokens
    assert key.answer in a.text


@pytest.mark.slow
def test_the_recalled_text_is_read_right_before_the_question_in_the_slots_cells(session, book,
                                                                                 monkeypatch):
    """`ask` puts what it recalls next to the question (docs/memory.md measures why), in
    the cells the empty slot lends: nothing ages out of the window to make room for it."""
    from ikv_local.ask import question_prompt
    from ikv_local.recall import SLOT_FOOTER, SLOT_HEADER

    key = book.needles[0]
    window = session.window
    before, state = window.snapshot()
    decoded: list[list[int]] = []
    append = window.append
    monkeypatch.setattr(window, "append",
                        lambda t, o, **kw: (decoded.append(list(t)), append(t, o, **kw))[1])
    monkeypatch.setattr(window, "fill_slot", lambda t: pytest.fail("the slot was filled"))
    rolled = []
    a = ask(session, key.question, answer_prefix=" The pass key is", max_tokens=8,
            on_text=lambda _: rolled.append((window.dropped, window.archived, window.lent)))
    prompt = session.engine.detokenize(decoded[0])
    assert prompt.startswith(SLOT_HEADER) and SLOT_FOOTER.strip() in prompt
    assert prompt.endswith(f"Question: {key.question}\nAnswer: The pass key is")
    assert key.answer in prompt.split(SLOT_FOOTER.strip())[0]  # recalled, before the question
    assert key.answer in a.text and any(key.answer in s.text for s in a.recalled)
    # what aged is only what the question alone needed (the recalled text took lent cells)
    layout = window.layout
    bare = len(session.engine.tokenize(
        question_prompt(session, key.question)[0] + " The pass key is", special=True))
    need = max(0, len(before.recent["tokens"]) + bare - layout.recent_capacity)
    need = -(-need // layout.block) * layout.block
    assert rolled and {r[:2] for r in rolled} == {(before.dropped + need, before.archived)}
    assert rolled[0][2] == layout.slot  # lent while the answer was written
    now, now_state = window.snapshot()
    assert now == before and now_state == state and window.lent == 0


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


@pytest.fixture
def small(ikv, tmp_path):
    """A session "small" (window 512) made by the real CLI from two sentences."""
    doc = tmp_path / "sky.txt"
    doc.write_text("The sky over the harbour is green today.\nThe boats are red.\n")
    run = ikv("ingest", str(doc), "--session", "small", "-c", "512")
    assert run.returncode == 0, run.stderr
    return "small"


@pytest.mark.slow
def test_a_question_that_is_not_utf8_is_read_with_a_warning(ikv, small):
    run = ikv("ask", "\udcff\udcfe What colour is the sky?", "--session", small, "-n", "4",
              "--json")  # argv bytes ff fe: Python hands them over as lone surrogates
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "ikv: warning: the question is not valid UTF-8: 2 bad byte(s) read as U+FFFD" \
        in run.stderr
    assert json.loads(run.stdout)["tokens"] > 0


@pytest.mark.slow
def test_a_question_too_long_for_the_window_is_refused_before_any_work(ikv, small):
    import time

    t0 = time.perf_counter()
    run = ikv("ask", "How many words? " + "word " * 20_000, "--session", small)  # 100 KB
    assert_one_line_error(run, 2, "the question is 20,0", "at most 255", "window of 512")
    assert time.perf_counter() - t0 < 30  # it once ran more than 5 minutes, silently
    run = ikv("ask", "What colour is the sky? " + "Think. " * 40, "--session", small, "-n", "4")
    assert run.returncode == 0, run.stderr  # a long question that fits is answered


@pytest.mark.slow
def test_a_refresh_in_a_full_window_takes_the_slots_cells_for_a_long_query(folder):
    """Mid-answer the query (question and answer so far, up to 128 tokens) is decoded beside
    the sink while the slot holds its spans; in a full 512 window only the headroom (64) is
    free, so it takes the slot's cells (it once failed: no room in the KV cache)."""
    from conftest import NAME

    from ikv_local.haystack import FACT_NEEDLES
    from ikv_local.recall import MAX_QUERY_TOKENS

    fact = FACT_NEEDLES[0]
    question = "Think about every place, person and thing in the text. " * 11 + fact.question
    with Session(NAME, OpenOptions()) as s:
        assert s.window.layout.headroom < MAX_QUERY_TOKENS <= len(s.engine.tokenize(question))
        a = ask(s, question, max_tokens=24, recall_every=4, keep=True)
        assert a.tokens > 8 and a.recalled
