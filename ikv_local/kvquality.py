"""The damage each KV cache type does to this model, measured against f16.

One calibration text is decoded by one engine per cache pair, in lockstep, asking for every
fourth position's next-token distribution; the damage of a pair is the mean KL divergence of its
distributions from f16's (and how often the top token still agrees). Running the engines side
by side keeps memory small: no engine's logits are stored beyond one batch. The result is
cached per model fingerprint, as the sketch is.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ikv_local import files
from ikv_local.engine import Engine, EngineConfig
from ikv_local.errors import EngineError
from ikv_local.fingerprint import model_fingerprint
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.paths import cache_dir

REFERENCE = ("f16", "f16")
CALIBRATION_SENTENCES = 130  # about 2,000 tokens with the demo model
CALIBRATION_CTX = 2304
BATCH = 256  # logits of 64 of its positions × a 262k vocabulary: 64 MiB per engine
SKIP = 32  # the first positions see too little context to tell cache types apart
STRIDE = 4  # damage is read at every 4th position: the output layer is most of the work
VERSION = 1


@dataclass(frozen=True)
class Damage:
    type_k: str
    type_v: str
    kl_mean: float  # nats per token, against f16
    kl_p95: float
    top1_agree: float  # share of positions whose most likely token is f16's
    tokens: int


def calibration_text() -> str:
    """Varied prose with facts and their questions: answering them needs distant keys."""
    needles = [pass_key_needle(3), *FACT_NEEDLES]
    hay = build(CALIBRATION_SENTENCES, needles, [0.1, 0.3, 0.5, 0.7, 0.9][: len(needles)], seed=5)
    asks = "\n".join(f"Q: {n.question} A: {n.answer}." for n in hay.needles if n.question)
    return f"{hay.text}\n\n{asks}\n"


def calibration_tokens() -> int:
    """`IKV_CALIBRATION_TOKENS`, else `CALIBRATION_CTX`: the most calibration tokens read.

    Fewer measure sooner but see less of the distance over which a quantized key's error
    grows; the test suite reads 512, since it checks the plan's logic, not the figures.
    """
    env = os.environ.get("IKV_CALIBRATION_TOKENS", "").strip()
    if not env:
        return CALIBRATION_CTX
    if not env.isdigit() or not BATCH <= int(env) <= CALIBRATION_CTX:
        raise EngineError(f"IKV_CALIBRATION_TOKENS={env!r} is not a token count from {BATCH} to "
                          f"{CALIBRATION_CTX}; unset it or give one")
    return int(env)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def measure(
    path: str | os.PathLike[str],
    pairs: Sequence[tuple[str, str]],
    *,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int = CALIBRATION_CTX,
    control: bool = False,
    stride: int = STRIDE,
) -> list[Damage]:
    """Damage of each pair (f16 itself is the reference and is left out of the result).

    With `control`, one more row last: f16 with flash attention forced on, which quantized V
    caches need, so its damage is flash attention's own rounding.
    """
    others = [p for p in pairs if p != REFERENCE]
    configs = [(*REFERENCE, None)] + [(k, v, True if v != "f16" else None) for k, v in others]
    if control:
        others.append(REFERENCE)
        configs.append((*REFERENCE, True))
    engines: list[Engine] = []
    try:
        for type_k, type_v, flash in configs:
            engines.append(Engine(path, EngineConfig(
                n_ctx=CALIBRATION_CTX, n_batch=BATCH, n_seq_max=1, n_threads=n_threads,
                n_gpu_layers=n_gpu_layers, type_k=type_k, type_v=type_v, flash_attn=flash)))
        tokens = engines[0].tokenize(calibration_text(), add_bos=True)[:min(max_tokens, CALIBRATION_CTX)]
        kls: list[list[np.ndarray]] = [[] for _ in others]
        agree: list[list[np.ndarray]] = [[] for _ in others]
        positions = np.arange(len(tokens))
        read = (positions >= SKIP) & ((positions - SKIP) % stride == 0)
        for start in range(0, len(tokens), BATCH):
            chunk = tokens[start : start + BATCH]
            at = read[start : start + len(chunk)]
            ref = None
            for i, engine in enumerate(engines):
                engine.decode(chunk, start, logits_last=False, logits_at=at)
                if not at.any():
                    continue
                logp = _log_softmax(engine.logits_rows(int(at.sum())))
                if ref is None:
                    ref = logp
                    continue
                kls[i - 1].append((np.exp(ref) * (ref - logp)).sum(axis=1))
                agree[i - 1].append(ref.argmax(axis=1) == logp.argmax(axis=1))
            if progress:
                progress(min(start + BATCH, len(tokens)), len(tokens))
    finally:
        for engine in engines:
            engine.close()
    out = []
    for (type_k, type_v), kl, ok in zip(others, kls, agree):
        kl_all, ok_all = np.concatenate(kl), np.concatenate(ok)
        out.append(Damage(type_k, type_v, float(max(kl_all.mean(), 0.0)),
                          float(np.percentile(kl_all, 95)), float(ok_all.mean()), len(kl_all)))
    return out


def _cache_path(sha: str) -> Path:
    return cache_dir() / "kvquality" / f"{sha}.json"


def cached(sha: str, tokens: int = CALIBRATION_CTX) -> dict[tuple[str, str], Damage]:
    """What was measured before for this model on `tokens` calibration tokens (nothing when
    never, when damaged, or when measured on another length)."""
    try:
        data = json.loads(_cache_path(sha).read_text())
        if data.get("version") != VERSION or data.get("calibration_tokens", CALIBRATION_CTX) != tokens:
            return {}
        return {(d["type_k"], d["type_v"]): Damage(**d) for d in data["damage"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def damage(
    engine: Engine,
    pairs: Sequence[tuple[str, str]],
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[str, str], Damage]:
    """Every pair's damage for `engine`'s model: from the cache, measuring what is missing."""
    sha = model_fingerprint(engine)["sha"]
    tokens = calibration_tokens()

    def ready() -> dict[tuple[str, str], Damage] | None:
        known = cached(sha, tokens)
        return known if all(p == REFERENCE or p in known for p in pairs) else None

    def make() -> dict[tuple[str, str], Damage]:
        known = cached(sha, tokens)
        missing = [p for p in pairs if p != REFERENCE and p not in known]
        t0 = time.perf_counter()
        for d in measure(engine.path, missing, n_threads=engine.config.n_threads,
                         n_gpu_layers=engine.config.n_gpu_layers, progress=progress,
                         max_tokens=tokens):
            known[d.type_k, d.type_v] = d
        files.write_atomic(_cache_path(sha), json.dumps({
            "version": VERSION, "calibration_tokens": tokens,
            "seconds": round(time.perf_counter() - t0, 1),
            "damage": [asdict(d) for d in known.values()]}).encode())
        return known

    known = files.made_once(_cache_path(sha).with_suffix(".lock"), ready, make)
    return {p: known[p] for p in pairs if p in known}
