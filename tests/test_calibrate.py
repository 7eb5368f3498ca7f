"""Choosing the sketch's keys by measurement, on the real demo model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ikv_local.calibrate import measure, sketch_spec
from ikv_local.fingerprint import model_fingerprint
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.paths import cache_dir
from ikv_local.sketch import encode, hamming, vectors


@pytest.fixture(scope="module")
def spec(engine):
    return sketch_spec(engine)


def test_the_chosen_units_rank_planted_facts_in_the_top_percent(engine, spec):
    cached = json.loads((cache_dir() / "sketch" / f"{model_fingerprint(engine)['sha']}.json").read_text())
    ranks = {(r["layer"], r["head"]): r for r in cached["ranks"]}
    assert len(ranks) == sum(lay.n_head_kv for lay in engine.facts.layers)  # every unit ranked
    for unit in spec.units:
        assert max(ranks[unit]["percentiles"]) <= 0.01
    assert spec.dim <= 768


@pytest.mark.slow
def test_sketch_bits_find_facts_in_another_haystack(engine, spec):
    """Held out: other filler, other depths, paraphrased questions included."""
    m = measure(engine, build(110, [pass_key_needle(7), *FACT_NEEDLES], [0.75, 0.1, 0.5, 0.3], seed=9))
    doc = encode(vectors([m.keys[layer][1:, h, :] for layer, h in spec.units], spec), spec)
    for (i, _), qk in zip(m.questions, m.question_keys):
        q = encode(vectors([qk[layer][:, h, :] for layer, h in spec.units], spec), spec)
        dist = hamming(doc, q).min(axis=1)
        best = dist[m.needle_tokens[i] - 1].min()
        assert (dist < best).mean() <= 0.01


@pytest.mark.slow
def test_spec_is_cached_per_model(engine, spec, monkeypatch, tmp_path):
    import shutil

    from ikv_local import calibrate

    name = f"{model_fingerprint(engine)['sha']}.json"
    shared = cache_dir() / "sketch" / name
    # this test damages the entry: a copy, so the other worker never waits for it made again
    monkeypatch.setenv("IKV_CACHE", str(tmp_path))
    path = cache_dir() / "sketch" / name
    path.parent.mkdir()
    shutil.copy2(shared, path)
    stamp = path.stat().st_mtime_ns

    def no_measuring(*_: object, **__: object) -> None:
        raise AssertionError("measured again: the cache was not used")

    monkeypatch.setattr(calibrate, "measure", no_measuring)
    assert sketch_spec(engine) == spec
    assert path.stat().st_mtime_ns == stamp
    path.write_text("{damaged")  # a damaged entry is measured again, not trusted
    with pytest.raises(AssertionError, match="measured again"):
        sketch_spec(engine)
    monkeypatch.setattr(calibrate, "measure", measure)
    assert sketch_spec(engine) == spec  # and the entry is written anew
    assert model_fingerprint(engine)["arch"] == "gemma3"


def test_needles_sit_where_they_were_planted():
    h = build(100, [pass_key_needle(3)], [0.5], seed=2)
    at = h.text.index(h.needles[0].fact) / len(h.text)
    assert 0.4 < at < 0.6
    assert h.text.count(h.needles[0].answer) == 2  # only in the fact itself
    assert np.isclose(h.depths[0], 0.5)
