"""Recall: span growth and merging (pure), and finding a planted fact in a real archive."""

from __future__ import annotations

import numpy as np
import pytest

from ikv_local.recall import RecallSettings, _merge, _sentence, find_spans, query_sketches, slot_tokens
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
