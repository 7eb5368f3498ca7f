"""Recall: span growth, selection and merging (pure), and finding a planted fact in a real archive."""

from __future__ import annotations

import numpy as np
import pytest

from ikv_local.recall import (RecallSettings, _merge, _sentence, find_spans, query_sketches, select_spans,
                              slot_tokens)
from ikv_local.record import Flag

S = int(Flag.SENTENCE_START)


def flags_for(lengths: list[int]) -> np.ndarray:
    """Sentence-start flags for consecutive sentences of these token lengths."""
    out = []
    for n in lengths:
        out += [S] + [0] * (n - 1)
    return np.asarray(out, np.uint8)


def test_a_hit_grows_to_its_sentence_then_neighbours_within_the_cap():
    flags = flags_for([10, 10, 10, 10, 10])
    same = np.zeros(len(flags), np.uint16)
    # hit in the third sentence [20, 30): grows by the next, then the previous sentence
    assert _sentence(flags, same, 0, 25, span_max=30) == (10, 40)
    assert _sentence(flags, same, 0, 25, span_max=20) == (20, 40)
    assert _sentence(flags, same, 0, 25, span_max=10) == (20, 30)


def test_a_long_sentence_is_cut_to_a_window_around_the_hit():
    flags = flags_for([200])
    a, b = _sentence(flags, np.zeros(200, np.uint16), 0, 120, span_max=64)
    assert b - a == 64 and a <= 120 < b


def test_spans_stop_at_a_change_of_source_and_use_record_ids():
    flags = flags_for([10, 10])
    sources = np.asarray([0] * 10 + [1] * 10, np.uint16)
    assert _sentence(flags, sources, 100, 105, span_max=64) == (100, 110)


def test_overlapping_and_touching_spans_merge():
    assert _merge([(0, 10), (5, 12), (12, 20), (30, 40)]) == [(0, 20), (30, 40)]
    assert _merge([]) == []


def test_selection_takes_the_best_spans_until_the_budget_paying_only_for_new_tokens():
    candidates = [(0, 10), (5, 15), (20, 30), (40, 45)]
    scores = np.array([0.9, 0.8, 0.5, 0.7])
    usable = np.ones(60, bool)
    # (5, 15) costs 5 beside (0, 10), so (40, 45) still fits in 20; (20, 30) does not
    assert select_spans(candidates, scores, usable, 20) == [(0, 15, 0.9), (40, 45, 0.7)]
    # a span too big for what is left is passed over for a smaller one after it
    assert select_spans(candidates, np.array([0.9, 0.1, 0.8, 0.5]), usable, 16) == [(0, 10, 0.9), (40, 45, 0.5)]
    assert select_spans(candidates, scores, usable, 0) == []


def test_selection_never_picks_a_span_with_a_damaged_record():
    usable = np.ones(20, bool)
    usable[3] = False
    assert select_spans([(0, 10), (10, 20)], np.array([0.9, 0.1]), usable, 100) == [(10, 20, 0.1)]


def test_selected_spans_come_back_in_original_order_merged_with_their_best_score():
    candidates = [(30, 40), (0, 10), (10, 20)]
    got = select_spans(candidates, np.array([0.2, 0.3, 0.6]), np.ones(40, bool), 100)
    assert got == [(0, 20, 0.6), (30, 40, 0.2)]


@pytest.fixture
def session(book, monkeypatch):
    from ikv_local.session import OpenOptions, Session

    monkeypatch.setenv("IKV_HOME", str(book.home))
    with Session("book", OpenOptions(writable=False)) as s:
        yield s, book.needles


def test_recall_finds_each_planted_fact_in_its_spans(session):
    session, needles = session
    assert session.window.archived > 2000
    for needle in needles:
        query = session.engine.tokenize(needle.question)
        queries = query_sketches(session.engine, session.spec, session.window.layout.sink, query)
        spans = find_spans(session.archive, session.index, queries, 224, RecallSettings(), query)
        assert spans, needle.question
        assert sum(s.end - s.start for s in spans) <= 224
        assert [s.start for s in spans] == sorted(s.start for s in spans)  # original order
        tokens, shown = slot_tokens(session.engine, spans, 256)
        assert len(tokens) <= 256
        text = session.engine.detokenize(tokens)
        assert needle.answer in text, (needle.question, [s.text for s in shown])
        # each span says where it came from
        assert all(s.source.endswith("book.txt") and s.position == s.start for s in shown)
