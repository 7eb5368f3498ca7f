import pytest

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts
from ikv_local.kvcost import bytes_per_token, kv_bytes, row_bytes


def layer(i: int, swa: bool, heads: int = 1, dim: int = 256) -> LayerFacts:
    return LayerFacts(i, heads, dim, dim, swa, 10000.0, 1.0, dim)


def test_row_bytes_follow_ggml_blocks():
    assert row_bytes("f16", 256) == 512
    assert row_bytes("f32", 256) == 1024
    assert row_bytes("q8_0", 256) == 8 * 34
    assert row_bytes("q4_0", 256) == 8 * 18


def test_row_bytes_refuses_partial_blocks_and_unknown_types():
    with pytest.raises(IkvError, match="blocks of 32"):
        row_bytes("q8_0", 100)
    with pytest.raises(IkvError, match="unknown KV cache type"):
        row_bytes("q3_weird", 256)


def test_gemma_like_model_costs():
    layers = [layer(i, swa=(i % 6 != 5)) for i in range(18)]
    assert bytes_per_token(layers) == 18 * 2 * 512
    assert bytes_per_token(layers, "q8_0", "q4_0") == 18 * (272 + 144)
    # full-size SWA: every layer holds every token
    assert kv_bytes(layers, 1000) == 1000 * 18 * 1024
    # trimmed SWA: the 15 local layers hold only their window
    assert kv_bytes(layers, 1000, swa_window=512) == 1000 * 3 * 1024 + 512 * 15 * 1024
    assert kv_bytes(layers, 100, swa_window=512) == 100 * 18 * 1024


def test_gqa_heads_multiply_width():
    assert bytes_per_token([layer(0, False, heads=8, dim=128)]) == 2 * 8 * 128 * 2
