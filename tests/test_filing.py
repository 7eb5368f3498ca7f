"""From the real KV cache to records on disk and back: nothing about a token is lost."""

from __future__ import annotations

import numpy as np
import pytest

from ikv_local.archive import Archive
from ikv_local.calibrate import sketch_spec
from ikv_local.filing import Origin, file_cells
from ikv_local.fingerprint import model_fingerprint
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.index import SketchIndex
from ikv_local.readout import read_cells
from ikv_local.record import Flag, Role
from ikv_local.sketch import encode, unit_keys, vectors


@pytest.fixture
def filed(engine, tmp_path):
    spec = sketch_spec(engine)
    hay = build(30, [pass_key_needle(4), FACT_NEEDLES[2]], [0.3, 0.7], seed=3)
    tokens = engine.tokenize(hay.text, add_bos=True)
    assert len(tokens) < engine.n_ctx
    archive = Archive.create(tmp_path, {"model_fingerprint": model_fingerprint(engine),
                                        "sketch": spec.to_dict()})
    source = archive.source_id("haystack.txt")
    engine.clear()
    engine.decode(tokens, 0, logits_last=False)
    block = 128
    for start in range(1, len(tokens), block):  # BOS stays in the sink
        chunk = tokens[start : start + block]
        file_cells(engine, archive, spec, start, chunk, 1000 + start,
                   Origin(Role.DOCUMENT, source, start // block, 1_700_000_000_000),
                   previous_token=tokens[start - 1])
    engine.clear()
    return archive, tokens, hay, spec, engine


def test_every_token_id_and_position_survives(filed, tmp_path):
    archive, tokens, _, _, _ = filed
    again = Archive(tmp_path)
    recs = again.records()
    assert again.usable.all()
    assert recs["token"].tolist() == tokens[1:]
    assert recs["position"].tolist() == list(range(1001, 1000 + len(tokens)))
    assert set(recs["role"]) == {int(Role.DOCUMENT)}
    assert again.sources()[recs["source"][0]] == "haystack.txt"
    assert (recs["time_ms"] == 1_700_000_000_000).all()
    # a token right after a full stop starts a sentence
    starts = set(np.flatnonzero(recs["flags"] & Flag.SENTENCE_START).tolist())
    engine = filed[4]
    after_stop = {i + 1 for i in range(len(recs) - 1)
                  if engine.piece(int(recs["token"][i])).rstrip().endswith(b".")}
    assert len(starts) >= 25 and after_stop <= starts


@pytest.mark.slow
def test_question_sketches_find_the_planted_facts(filed, engine):
    archive, tokens, hay, spec, _ = filed
    index = SketchIndex(archive)
    text = archive.records()["token"]
    for needle in hay.needles:
        q = engine.tokenize(needle.question, add_bos=True)
        engine.clear()
        engine.decode(q, 0, logits_last=False)
        state = read_cells(engine, 1, len(q))
        engine.clear()
        _, keys = unit_keys(state, engine.facts, spec.units)
        hits = index.search(encode(vectors(keys, spec), spec), k=8)
        answer = engine.tokenize(" " + needle.answer.split()[0])
        hit_tokens = {int(t) for i in hits.ids for t in text[max(0, i - 3) : i + 4]}
        assert hit_tokens & set(answer), needle.question
