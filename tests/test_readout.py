"""Reading cells out of the real KV cache of the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from ikv_local.engine import Engine, EngineConfig
from ikv_local.readout import read_cells
from ikv_local.rope import unrope
from ikv_local.sequences import SCRATCH_SEQ

TEXT = (
    "Alice met Bob at the old station. They talked about the weather, the trains and "
    "the pass key, which was 7351. Then they walked home along the river. "
) * 3


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def unroped_keys(eng: Engine, pos0: int, layer: int) -> tuple[np.ndarray, np.ndarray]:
    eng.clear()
    tokens = eng.tokenize(TEXT, add_bos=True)
    eng.decode(tokens, pos0)
    state = read_cells(eng, pos0, pos0 + len(tokens))
    positions, rows = state.layer(layer)
    return positions, unrope(rows.k, positions, eng.facts.layers[layer], eng.facts.rope_type)


@pytest.fixture
def fresh(engine):
    engine.clear()
    yield engine
    engine.clear()


def test_readout_keeps_every_position_and_layer(fresh):
    tokens = fresh.tokenize(TEXT, add_bos=True)
    fresh.decode(tokens, 0)
    state = read_cells(fresh, 10, 60, values=True)
    assert state.seq_id == SCRATCH_SEQ
    assert len(state.caches) == 2  # Gemma 3: global cache, sliding-window cache
    for cache in state.caches:
        assert np.array_equal(np.sort(cache.positions), np.arange(10, 60))
    for lay in fresh.facts.layers:
        positions, rows = state.layer(lay.index)
        assert rows.k.shape == (50, lay.n_head_kv, lay.head_dim_k)
        assert rows.v is not None and rows.v.shape == (50, lay.n_head_kv, lay.head_dim_v)
        assert np.isfinite(rows.k).all() and np.abs(rows.k).max() > 0
    # the scratch sequence is gone and the conversation untouched
    assert fresh.seq_pos_range(SCRATCH_SEQ) == (-1, -1)
    assert fresh.seq_pos_range(0) == (0, len(tokens) - 1)


@pytest.mark.slow
def test_same_text_at_another_position_has_the_same_unroped_keys(fresh):
    for layer in fresh.facts.global_layers + [0]:
        p_a, k_a = unroped_keys(fresh, 0, layer)
        p_b, k_b = unroped_keys(fresh, 300, layer)
        assert np.array_equal(p_b, p_a + 300)
        assert cosine(k_a, k_b).min() > 0.99
    # without undoing RoPE the fast-rotating layer 0 keys differ
    fresh.clear()
    tokens = fresh.tokenize(TEXT, add_bos=True)
    fresh.decode(tokens, 300)
    raw_b = read_cells(fresh, 300, 300 + len(tokens)).layer(0)[1].k
    fresh.clear()
    fresh.decode(tokens, 0)
    raw_a = read_cells(fresh, 0, len(tokens)).layer(0)[1].k
    assert cosine(raw_a, raw_b).mean() < 0.6


def test_keys_after_a_context_shift_still_match(fresh):
    tokens = fresh.tokenize(TEXT, add_bos=True)
    n = len(tokens)
    fresh.decode(tokens, 0)
    layer = fresh.facts.global_layers[0]
    before = read_cells(fresh, 40, n).layer(layer)
    fresh.seq_rm(0, 1, 40)
    fresh.seq_add(0, 40, -1, -39)
    fresh.decode(tokens[:1], n - 39)  # decoding applies the pending K shift
    after = read_cells(fresh, 1, n - 39).layer(layer)
    assert np.array_equal(after[0], before[0] - 39)
    lay = fresh.facts.layers[layer]
    k0 = unrope(before[1].k, before[0], lay, "neox")
    k1 = unrope(after[1].k, after[0], lay, "neox")
    assert cosine(k0, k1).min() > 0.995


@pytest.mark.parametrize("cache_type", ["q8_0", "q4_0"])
def test_quantized_caches_read_back_like_f16(demo_path, engine, cache_type):
    layer = engine.facts.global_layers[0]
    _, reference = unroped_keys(engine, 0, layer)
    engine.clear()
    with Engine(demo_path, EngineConfig(n_ctx=512, type_k=cache_type, type_v=cache_type)) as q:
        assert q.k_rotation == 256 and q.v_rotation == 64  # stored Hadamard-rotated
        _, keys = unroped_keys(q, 0, layer)
    sims = cosine(reference, keys)
    assert sims.mean() > (0.99 if cache_type == "q8_0" else 0.95)


def test_values_read_the_same_with_and_without_flash_attention(demo_path, engine):
    """Without flash attention llama.cpp stores V transposed."""
    tokens = engine.tokenize(TEXT, add_bos=True)[:64]
    out = []
    for fa in (True, False):
        with Engine(demo_path, EngineConfig(n_ctx=256, flash_attn=fa)) as eng:
            eng.decode(tokens, 0)
            out.append(read_cells(eng, 0, 64, values=True).layer(0)[1].v)
    assert cosine(out[0], out[1]).min() > 0.999
