"""What a model is called wherever ikv names it; the fingerprint itself is tested with calibrate."""

from __future__ import annotations

import pytest

from ikv_local.fingerprint import model_label, tokenizer_cache


def test_a_model_is_called_by_its_name_or_else_its_architecture():
    assert model_label({"arch": "gemma3", "name": "Gemma 3 270m", "sha": "0" * 16}) == "Gemma 3 270m"
    assert model_label({"arch": "llama", "name": None, "sha": "0" * 16}) == "llama"
    assert model_label({"arch": "llama", "name": "", "sha": "0" * 16}) == "llama"
    assert model_label({"arch": "qwen2"}) == "qwen2"  # sessions written before names were kept


@pytest.mark.slow  # three new interpreters, each loading the model
def test_the_tokenizer_digest_is_kept_per_model_file_and_read_back(demo_path, ikv_cache):
    """The digest is read from the cache in a new process (a fifth of a second per `ikv ask`
    on the demo model), and made again when the cache holds nothing usable."""
    import subprocess
    import sys

    code = ("import sys; from ikv_local.engine import Engine, EngineConfig; "
            "from ikv_local.fingerprint import tokenizer_sha; "
            "print(tokenizer_sha(Engine(sys.argv[1], EngineConfig(n_ctx=256))))")

    def digest() -> str:
        run = subprocess.run([sys.executable, "-c", code, str(demo_path)], capture_output=True,
                             text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    real = digest()
    kept = tokenizer_cache(demo_path)
    assert kept.parent == ikv_cache / "tokenizer"
    assert kept.read_text() == real and len(real) == 64
    assert kept.stat().st_mode & 0o777 == 0o600
    kept.write_text("f" * 64)  # what a new process uses is what the cache holds
    assert digest() == "f" * 64
    kept.write_text("torn")  # not a digest: measured again and kept
    assert digest() == real and kept.read_text() == real
