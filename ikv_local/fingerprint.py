"""A model's identity for archives: what must match for stored sketches to mean the same.

Hyperparameters and tokenizer (as llama.cpp loaded them), the file size, and the digest of
the file's first and last MiB: cheap on a 40 GB model, and any re-quantization or fine-tune
changes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import llama_cpp

from ikv_local.engine import Engine

_SAMPLE = 1 << 20


def tokenizer_sha(engine: Engine) -> str:
    """Of every token's text; once per loaded model (a 262k vocabulary takes a while)."""
    if "tokenizer_sha" not in engine.shared:
        engine.shared["tokenizer_sha"] = _tokenizer_sha(engine)
    return str(engine.shared["tokenizer_sha"])


def _tokenizer_sha(engine: Engine) -> str:
    digest = hashlib.sha256()
    vocab = engine._vocab
    for token in range(engine.facts.n_vocab):
        digest.update(llama_cpp.llama_vocab_get_text(vocab, token) or b"")
        digest.update(b"\0")
    return digest.hexdigest()


def model_fingerprint(engine: Engine) -> dict[str, object]:
    cached = getattr(engine, "_fingerprint", None)
    if cached is not None:
        return cached
    f = engine.facts
    size = engine.path.stat().st_size
    with engine.path.open("rb") as fh:
        head = fh.read(_SAMPLE)
        fh.seek(max(0, size - _SAMPLE))
        tail = fh.read(_SAMPLE)
    hparams = {
        "arch": f.arch,
        "n_layer": f.n_layer,
        "n_embd": f.n_embd,
        "n_vocab": f.n_vocab,
        "rope_type": f.rope_type,
        "layers": [[lay.n_head_kv, lay.head_dim_k, lay.head_dim_v, lay.swa, lay.rope_base,
                    lay.rope_scale, lay.n_rot] for lay in f.layers],
    }
    body = {
        "hparams": hparams,
        "tokenizer": tokenizer_sha(engine),
        "file_bytes": size,
        "file_sample": hashlib.sha256(head + tail).hexdigest(),
    }
    sha = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    fp = {"arch": f.arch, "name": f.name, "sha": sha[:16]}
    engine._fingerprint = fp  # type: ignore[attr-defined]
    return fp


def model_label(fingerprint: Mapping[str, Any]) -> str:
    """What people call the model: its own name, or its architecture when the file has none."""
    return str(fingerprint.get("name") or fingerprint["arch"])
