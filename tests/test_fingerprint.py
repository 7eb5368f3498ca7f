"""What a model is called wherever ikv names it; the fingerprint itself is tested with calibrate."""

from __future__ import annotations

from ikv_local.fingerprint import model_label


def test_a_model_is_called_by_its_name_or_else_its_architecture():
    assert model_label({"arch": "gemma3", "name": "Gemma 3 270m", "sha": "0" * 16}) == "Gemma 3 270m"
    assert model_label({"arch": "llama", "name": None, "sha": "0" * 16}) == "llama"
    assert model_label({"arch": "llama", "name": "", "sha": "0" * 16}) == "llama"
    assert model_label({"arch": "qwen2"}) == "qwen2"  # sessions written before names were kept
