"""The budget planner's arithmetic, without a model (figures as `ikv info` gives them)."""

from __future__ import annotations

import pytest

from ikv_local.facts import LayerFacts
from ikv_local.plan import BudgetTooSmall, choose, options

# the demo model: 18 layers of 1 KV head × 256 (15 sliding-window, kept full-size by ikv)
GEMMA = [LayerFacts(i, 1, 256, 256, i % 6 != 5, 10000.0, 1.0, 256) for i in range(18)]
MIB = 2**20


def test_windows_per_cache_type_match_ikv_info_bytes_per_token():
    found = {(o.type_k, o.type_v): o for o in options(GEMMA, 32 * MIB, 32768)}
    # ikv info: f16 18,432 B/token, q8_0 9,792, q4_0 5,184
    assert found["f16", "f16"].bytes_per_cell == 18_432
    assert found["q8_0", "q8_0"].bytes_per_cell == 9_792
    assert found["q4_0", "q4_0"].bytes_per_cell == 5_184
    assert found["q8_0", "q4_0"].bytes_per_cell == 18 * (272 + 144)
    # windows padded down to llama.cpp's 256 cells, never over the budget
    assert found["f16", "f16"].n_ctx == 1792 and found["q4_0", "q4_0"].n_ctx == 6400
    for o in found.values():
        assert o.n_ctx % 256 == 0 and o.kv_bytes <= 32 * MIB
        assert (o.n_ctx + 256) * o.bytes_per_cell > 32 * MIB
    assert not found["f16", "f16"].flash_attn and found["q8_0", "q4_0"].flash_attn


def test_the_trained_context_caps_the_window():
    found = options(GEMMA, 4096 * MIB, 32768)
    assert {o.n_ctx for o in found} == {32768}


def test_choose_the_largest_window_inside_the_quality_bound():
    quality = {("q8_0", "q8_0"): 0.002, ("q8_0", "q4_0"): 0.03, ("q4_0", "q4_0"): 0.08}
    found = options(GEMMA, 64 * MIB, 32768, quality=quality)
    assert [(o.type_k, o.type_v) for o in found][0] == ("q4_0", "q4_0")
    assert (choose(found, 64 * MIB, 0.01).type_k, choose(found, 64 * MIB, 0.01).n_ctx) == ("q8_0", 6656)
    assert choose(found, 64 * MIB, 0.05).type_v == "q4_0"
    assert choose(found, 64 * MIB, 0.0).type_k == "f16"
    # unmeasured quantized types are never chosen over f16
    assert choose(options(GEMMA, 64 * MIB, 32768), 64 * MIB, 1.0).type_k == "f16"


def test_a_budget_too_small_for_any_window_is_one_clear_error():
    with pytest.raises(BudgetTooSmall, match="raise --kv-budget") as err:
        choose(options(GEMMA, 2 * MIB, 32768), 2 * MIB, 0.01)
    assert "\n" not in str(err.value) and err.value.exit_code == 3
    # only quantized types fit, and none is measured inside the bound
    tight = options(GEMMA, 4 * MIB, 32768, quality={("q4_0", "q4_0"): 0.5})
    assert tight and all(o.type_k != "f16" for o in tight)
    with pytest.raises(BudgetTooSmall, match="measured damage"):
        choose(tight, 4 * MIB, 0.01)
