"""Every mainstream family's rope, de-roped exactly as llama.cpp applied it, on tiny models.

`tiny_gguf.py` writes a random-weight model per family with the family's real rope
hyperparameters and factor tensors. Layer 0's keys depend only on the token, so the same text
decoded at position p, alone in the cache, gives layer-0 keys that differ only by rotation:
de-roped, they must agree with the text at position 0 (cosine ≥ 0.999), up to positions past
100,000, and after llama.cpp's context shift moved the cells there. A single token alone in
the cache attends only to itself, so every layer's key depends on the token alone: that checks
the layers whose rope differs (Gemma's global layers, gpt-oss's sliding ones). Later layers of
longer text are not compared: some models are not translation-invariant there (Ministral 3
scales queries by absolute position; a random MoE router flips experts on rounding).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, made_once_per_run, run_ikv
from tiny_gguf import FAMILIES, REFUSED, expected, write

from ikv_local.engine import Engine, EngineConfig
from ikv_local.facts import ModelFacts, RopeFacts
from ikv_local.readout import read_cells
from ikv_local.rope import unrope
from ikv_local.support import why_not

TEXT = "The pass key is 52445. Remember it, 52445 is the pass key."
POSITIONS = (1, 777, 32_768, 100_000, 131_000)
SHIFT = 100_000
# (family, context size): Phi-3's LongRoPE picks the long factors past its original context
CASES = [(f, 256) for f in FAMILIES] + [("phi3", 8192)]
CORRECTED = {"llama3-freqs", "qwen2-yarn", "phi3", "mistral3", "gpt-oss"}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, demo_path, smollm_shipped_path):
    """Each family's model, written once per run by the first worker that asks for it."""
    def model(family: str) -> Path:
        name = f"{family}.gguf"
        folder = made_once_per_run(tmp_path_factory, f"tiny-{family}", lambda out: write(
            family, out / name, spm=demo_path, bpe=smollm_shipped_path))
        return folder / name

    return model


def keys_at(
    e: Engine, tokens: list[int], pos: int, rope: RopeFacts | None = None, shift: int = 0
) -> dict[int, np.ndarray]:
    """De-roped keys of every layer, [n, heads, dim], of `tokens` at `pos` (then shifted)."""
    e.clear()
    e.decode(tokens, pos, logits_last=False)
    if shift:
        e.seq_add(0, 0, -1, shift)
        e.decode(tokens[:1], 0, seq=1, logits_last=False)  # llama.cpp applies a shift at a decode
        e.seq_rm(1)
        pos += shift
    state = read_cells(e, pos, pos + len(tokens))
    out = {}
    for lay in e.facts.layers:
        positions, rows = state.layer(lay.index)
        assert np.array_equal(positions, np.arange(pos, pos + len(tokens)))
        out[lay.index] = unrope(
            rows.k, positions, lay, e.facts.rope_type, e.facts.rope if rope is None else rope
        )
    return out


def worst_cosine(
    a: dict[int, np.ndarray], b: dict[int, np.ndarray], layers: list[int] | None = None
) -> float:
    worst = 1.0
    for layer, x in a.items():
        if layers is not None and layer not in layers:
            continue
        y = b[layer]
        cos = (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
        worst = min(worst, float(cos.min()))
    return worst


@pytest.mark.slow
@pytest.mark.parametrize(("family", "n_ctx"), CASES)
def test_keys_de_rope_to_the_same_key_at_any_position(tiny, family, n_ctx):
    with Engine(tiny(family), EngineConfig(n_ctx=n_ctx, n_batch=64)) as e:
        assert why_not(e.facts) is None
        tokens = e.tokenize(TEXT, add_bos=True)
        ref, one = keys_at(e, tokens, 0), keys_at(e, tokens[-1:], 0)
        roped = [lay.index for lay in e.facts.layers if lay.rope]
        for pos in POSITIONS:
            assert worst_cosine(ref, keys_at(e, tokens, pos), [0]) >= 0.999, (family, pos)
            assert worst_cosine(one, keys_at(e, tokens[-1:], pos), roped) >= 0.999, (
                family,
                pos,
                "one",
            )
        assert worst_cosine(ref, keys_at(e, tokens, 0, shift=SHIFT), [0]) >= 0.999, (
            family,
            "shift",
        )
        assert worst_cosine(one, keys_at(e, tokens[-1:], 0, shift=SHIFT), roped) >= 0.999, (
            family,
            "shift",
        )
        far = keys_at(e, tokens, 100_000, rope=RopeFacts())
        if family in CORRECTED:  # without the family's factors or YaRN, the keys drift
            assert worst_cosine(ref, far, [0]) < 0.99, family


@pytest.mark.slow
@pytest.mark.parametrize(("family", "n_ctx"), CASES)
def test_facts_match_what_the_file_says(tiny, family, n_ctx):
    want = expected(family)
    with Engine(tiny(family), EngineConfig(n_ctx=n_ctx, n_seq_max=1)) as e:
        f: ModelFacts = e.facts
    assert (f.arch, f.n_layer, f.n_embd, f.n_head, f.n_vocab) == (
        want["arch"],
        want["n_layer"],
        want["n_embd"],
        want["n_head"],
        want["n_vocab"],
    )
    assert (f.rope_type, f.rope_scaling, f.n_ctx_train) == (
        want["rope"],
        want["rope_scaling"],
        want["n_ctx_train"],
    )
    assert f.swa_layers == want["swa_layers"]
    assert [lay.index for lay in f.layers if not lay.rope] == want["nope_layers"]
    for lay in f.layers:
        assert (lay.n_head_kv, lay.head_dim_k, lay.n_rot) == (
            want["n_head_kv"],
            want["head_dim"],
            want["n_rot"],
        )
        base, scale = (
            ("freq_base_swa", "freq_scale_swa") if lay.swa else ("freq_base", "freq_scale")
        )
        assert lay.rope_base == pytest.approx(want[base]) and lay.rope_scale == pytest.approx(
            want[scale]
        )
    assert f.rope.n_ctx_orig == want["n_ctx_orig_yarn"]
    assert f.rope.ext_factor == (1.0 if want["rope_scaling"] == "yarn" else 0.0)
    factors = (
        "rope_freqs.weight"
        if want["rope_freqs"]
        else "rope_factors_long.weight"
        if want["rope_factors_long"] and n_ctx > want["n_ctx_orig_yarn"]
        else "rope_factors_short.weight"
        if want["rope_factors_short"]
        else ""
    )
    assert f.rope.factors_from == factors
    assert (f.rope.freq_factors is not None) == bool(factors)


@pytest.mark.slow
@pytest.mark.parametrize("family", REFUSED)
def test_a_model_ikv_cannot_de_rope_is_refused_before_any_session_file(
    tiny, family, tmp_path, ikv_home
):
    run = run_ikv("info", str(tiny(family)), "--no-measure", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["memory"].startswith("no: cannot undo 'mrope'")
    doc = tmp_path / "doc.txt"
    doc.write_text("Nothing to see here.\n")
    run = run_ikv("ingest", str(doc), "--session", "vl", "--model", str(tiny(family)))
    assert_one_line_error(run, 1, "ikv cannot keep memory for", "mrope")
    assert not (ikv_home / "sessions" / "vl").exists()
    run = run_ikv("chat", str(tiny(family)), "--session", "vl2")
    assert run.returncode != 0 and "mrope" in run.stderr and "Traceback" not in run.stderr
    assert not (ikv_home / "sessions" / "vl2").exists()


def test_no_rope_layers_stay_out_of_the_sketch(tiny):
    """SmolLM3's every-4th layer has no rope, yet llama.cpp's shift rotates it: not de-ropable."""
    from ikv_local.calibrate import calibration_haystack, measure

    with Engine(tiny("smollm3"), EngineConfig(n_ctx=2048, n_batch=256)) as e:
        tokens = e.tokenize(TEXT, add_bos=True)
        one = keys_at(e, tokens[-1:], 0)
        # decoded at 1,000: not rotated, so the de-rope by 1,000 turns it away
        assert worst_cosine(one, keys_at(e, tokens[-1:], 1000), [3]) < 0.99
        ranked = {r.layer for r in measure(e, calibration_haystack()).ranks}
    assert ranked == {0, 1, 2}


@pytest.mark.parametrize(("family", "growth"), [
    ("qwen2-yarn", 1 + 0.1 * np.log(4)),   # YaRN factor 4
    ("gpt-oss", 1 + 0.1 * np.log(32)),     # factor 32
    ("mistral3", 1.0),                      # its yarn_log_multiplier cancels the factor
    ("qwen2", 1.0),                         # no YaRN: a shift only rotates
])
def test_a_context_shift_scales_yarn_keys_again(tiny, family, growth):
    """llama.cpp's shift re-applies YaRN's magnitude factor; the de-rope (a rotation) ignores it."""
    with Engine(tiny(family), EngineConfig(n_ctx=256, n_batch=64)) as e:
        tokens = e.tokenize(TEXT, add_bos=True)
        direct = keys_at(e, tokens, 1000)[0]
        shifted = keys_at(e, tokens, 0, shift=1000)[0]
    assert np.linalg.norm(shifted) / np.linalg.norm(direct) == pytest.approx(growth, rel=2e-3)
    assert worst_cosine({0: direct}, {0: shifted}) >= 0.999
