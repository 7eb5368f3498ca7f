"""Recall: span growth, selection and merging (pure), and finding a planted fact in a real archive."""

from __future__ import annotations

import numpy as np
import pytest

from ikv_local.recall import (
    RecallSettings,
    _merge,
    _sentence,
    find_spans,
    query_sketches,
    select_spans,
    slot_tokens,
)
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


def _tiny_archive(folder, tokens: list[int], sketches: np.ndarray):
    from ikv_local.archive import Archive
    from ikv_local.record import encode

    archive = Archive.create(folder, {"model_fingerprint": {"arch": "synthetic"}, "sketch": {}})
    flags = np.where(np.arange(len(tokens)) % 8 == 0, S, 0)  # a sentence every 8 tokens
    archive.append(encode(position=np.arange(len(tokens)), time_ms=0, token=np.asarray(tokens),
                          segment=0, source=0, role=0, flags=flags, sketch=sketches))
    return archive


def test_rare_question_tokens_outweigh_common_ones_in_the_key_score(tmp_path):
    from ikv_local.recall import score_spans

    rng = np.random.default_rng(0)
    words = rng.integers(0, 256, (4, 64), dtype=np.uint8)  # sketches of "the", "a", "of", "Marta"
    # 10 sentences: 9 hold near partners of the three common words (30% of the bits differ),
    # one ("Marta's") holds the name itself and nothing else of the question
    tokens, sketches = [], []
    for s in range(10):
        ids = [3, 20, 21, 22, 23, 24, 25, 26] if s == 6 else [0, 1, 2, 7, 8, 9, 10, 11]
        for t in ids:
            tokens.append(t)
            if t == 3:
                sketches.append(words[t])
            elif t < 3:
                sketches.append(words[t] ^ np.packbits(rng.random(512) < 0.3))
            else:
                sketches.append(rng.integers(0, 256, 64, dtype=np.uint8))
    archive = _tiny_archive(tmp_path / "a", tokens, np.asarray(sketches, np.uint8))
    question = [0, 1, 2, 3]  # "the a of Marta"
    queries = words[question]
    candidates = [(8 * s, 8 * s + 8) for s in range(10)]
    plain = score_spans(archive, candidates, queries, RecallSettings(lexical=0.0), question)
    assert int(np.argmax(plain)) != 6  # three common words found beat one rare word
    weighed = score_spans(archive, candidates, queries, RecallSettings(lexical=0.0, rarity=1.0),
                          question)
    assert int(np.argmax(weighed)) == 6


def test_every_occurrence_of_a_rare_question_token_becomes_a_candidate(tmp_path):
    from ikv_local.recall import _rare_occurrences

    tokens = [5] * 40 + [9] + [5] * 20 + [9, 7] + [5] * 10
    archive = _tiny_archive(tmp_path / "a", tokens, np.zeros((len(tokens), 64), np.uint8))
    assert _rare_occurrences(archive, [5, 9, 7, 99], len(tokens), most=2).tolist() == [40, 61, 62]
    assert _rare_occurrences(archive, [5, 9, 7], len(tokens), most=1).tolist() == [62]
    assert _rare_occurrences(archive, [5, 9, 7], 50, most=2).tolist() == [40]  # within the limit


def test_a_question_in_other_words_that_keeps_a_rare_name_finds_its_fact(session):
    session, _ = session
    settings = RecallSettings()
    question = "Where does Marta put her bike?"  # the fact: "Marta keeps her spare bicycle in..."
    query = session.engine.tokenize(question)
    queries = query_sketches(session.engine, session.spec, session.window.layout.sink, query)
    spans = find_spans(session.archive, session.index, queries, 224, settings, query)
    assert "blue shed" in session.engine.detokenize([t for s in spans for t in s.tokens])


def test_spans_far_below_the_best_are_left_out_of_the_slot(tmp_path):
    from ikv_local.index import SketchIndex

    rng = np.random.default_rng(1)
    words = rng.integers(0, 256, (3, 64), dtype=np.uint8)
    tokens, sketches = [], []
    for s in range(10):  # sentence 6 holds the question's words; 0 and 2 a near partner of one
        for j in range(8):
            t = 100 + 8 * s + j
            if s == 6 and j < 3:
                t, sk = j, words[j]
            elif j == 0 and s in (0, 2):
                t, sk = 50 + s, words[0] ^ np.packbits(rng.random(512) < 0.25)
            else:
                sk = rng.integers(0, 256, 64, dtype=np.uint8)
            tokens.append(t)
            sketches.append(sk)
    archive = _tiny_archive(tmp_path / "a", tokens, np.asarray(sketches, np.uint8))
    index = SketchIndex(archive)
    question = [0, 1, 2]
    every = find_spans(archive, index, words, 80, RecallSettings(k=5, span_max=8), question)
    best = find_spans(archive, index, words, 80, RecallSettings(k=5, span_max=8, keep_ratio=0.8),
                      question)
    assert len(every) > 1 and (48, 56) in [(s.start, s.end) for s in every]
    assert [(s.start, s.end) for s in best] == [(48, 56)]
