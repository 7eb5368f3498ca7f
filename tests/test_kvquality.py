"""The damage of quantized KV caches, measured on the real demo model."""

from __future__ import annotations

import json
import shutil

import pytest

from ikv_local.fingerprint import model_fingerprint
from ikv_local.kvquality import STRIDE, _cache_path, cached, calibration_tokens, damage, measure

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures


def test_q4_0_keys_do_more_damage_than_q8_0(demo_path):
    q8, q4 = measure(demo_path, [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0")], max_tokens=320)
    assert (q8.type_k, q4.type_k) == ("q8_0", "q4_0")  # the reference itself is left out
    assert 0 < q8.kl_mean < q4.kl_mean
    assert q8.kl_p95 >= q8.kl_mean and q4.top1_agree <= q8.top1_agree <= 1.0
    assert q8.tokens == (320 - 32) // STRIDE  # the first positions are skipped, then every 4th read


def test_damage_is_measured_once_per_model_and_remeasured_when_damaged(engine, monkeypatch,
                                                                       tmp_path):
    sha = model_fingerprint(engine)["sha"]
    shared = _cache_path(sha)
    # this test damages the entry and leaves another length's: a copy, so the plan tests on
    # the other worker neither wait for it nor measure every pair again
    monkeypatch.setenv("IKV_CACHE", str(tmp_path))
    if shared.exists():
        _cache_path(sha).parent.mkdir()
        shutil.copy2(shared, _cache_path(sha))
    first = damage(engine, [("q8_0", "q8_0")])[("q8_0", "q8_0")]
    path = _cache_path(sha)
    tokens = calibration_tokens()
    assert cached(sha, tokens)[("q8_0", "q8_0")] == first
    stamp = path.stat().st_mtime_ns
    assert damage(engine, [("q8_0", "q8_0")])[("q8_0", "q8_0")] == first
    assert path.stat().st_mtime_ns == stamp  # read, not measured again
    path.write_text('{"version": 1, "damage": [{"type_k": 1}]}')
    assert cached(sha, tokens) == {}
    again = damage(engine, [("q8_0", "q8_0")])[("q8_0", "q8_0")]
    assert abs(again.kl_mean - first.kl_mean) < 0.2 * first.kl_mean  # same measurement
    assert json.loads(path.read_text())["version"] == 1
    # measured on another calibration length: not what this length would measure
    monkeypatch.setenv("IKV_CALIBRATION_TOKENS", str(tokens - 256))
    shorter = damage(engine, [("q8_0", "q8_0")])[("q8_0", "q8_0")]
    assert shorter.tokens == (tokens - 256 - 32) // STRIDE < again.tokens
    assert cached(sha, tokens) == {} and cached(sha, tokens - 256)[("q8_0", "q8_0")] == shorter


@pytest.mark.parametrize("value", ["lots", "0", "100000"])
def test_a_calibration_length_that_is_no_token_count_is_one_clear_error(value, monkeypatch):
    from ikv_local.errors import EngineError

    monkeypatch.setenv("IKV_CALIBRATION_TOKENS", value)
    with pytest.raises(EngineError, match="IKV_CALIBRATION_TOKENS"):
        calibration_tokens()
