"""A model's identity for archives: what must match for stored sketches to mean the same.

Hyperparameters and tokenizer (as llama.cpp loaded them), the file size, and the digest of
the file's first and last MiB: cheap on a 40 GB model, and any re-quantization or fine-tune
changes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import llama_cpp

from ikv_local import files
from ikv_local.engine import Engine
from ikv_local.errors import IkvError
from ikv_local.paths import cache_dir

_SAMPLE = 1 << 20


def tokenizer_sha(engine: Engine) -> str:
    """Of every token's text; once per loaded model, and kept in the cache per model file (a
    262k vocabulary takes a fifth of a second, which every `ikv ask` would pay)."""
    return engine.per_model("tokenizer_sha", lambda: _cached_tokenizer_sha(engine))


def tokenizer_cache(model_path: Path) -> Path:
    """Where the digest of this model file's tokenizer is kept (path, size and mtime name it)."""
    st = model_path.stat()
    key = hashlib.sha256(f"{model_path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return cache_dir() / "tokenizer" / f"{key.hexdigest()[:32]}.txt"


def _cached_tokenizer_sha(engine: Engine) -> str:
    path = tokenizer_cache(engine.path)
    try:
        known = path.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    sha = _tokenizer_sha(engine)
    try:
        files.private_dir(path.parent)
        files.write_atomic(path, sha.encode())
    except (OSError, IkvError):  # a cache: a read-only or full disk only costs the next run the time
        pass
    return sha


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
