"""Choose, by measurement, which keys feed the sketch, and fit its mean keys.

Plant needles in a haystack, read every layer's keys out of the cache, and for each
(layer, KV head) unit rank every haystack token by its best centered cosine against the
question's keys. A unit is as good as the rank its needle tokens reach. The best units (up to
`MAX_SKETCH_DIM` dimensions) feed the sketch; the result is cached per model fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ikv_local import files
from ikv_local.engine import Engine, EngineConfig
from ikv_local.fingerprint import model_fingerprint
from ikv_local.haystack import FACT_NEEDLES, Haystack, build, pass_key_needle
from ikv_local.paths import cache_dir
from ikv_local.readout import read_cells
from ikv_local.rope import check_supported, unrope
from ikv_local.sequences import SCRATCH_SEQ
from ikv_local.sketch import SketchSpec

MAX_SKETCH_DIM = 768
SKETCH_SEED = 20260
CALIBRATION_SENTENCES = 110  # about 1,700 tokens with the demo model
CALIBRATION_CTX = 2048  # the haystack is read in one window, so the result is the model's alone


@dataclass(frozen=True)
class UnitRank:
    layer: int
    head: int
    percentiles: list[float]  # per question: share of haystack tokens scoring above the best needle token

    @property
    def mean(self) -> float:
        return float(np.mean(self.percentiles))

    @property
    def worst(self) -> float:
        return float(np.max(self.percentiles))


@dataclass
class Measurement:
    n_tokens: int
    ranks: list[UnitRank]
    needle_tokens: list[np.ndarray]  # haystack token indices of each needle
    keys: dict[int, np.ndarray]  # layer -> de-roped haystack keys [n, heads, dim]
    questions: list[tuple[int, str]]  # (needle index, question text)
    question_keys: list[dict[int, np.ndarray]]  # per question: layer -> [m, heads, dim]


def token_spans(engine: Engine, tokens: list[int]) -> np.ndarray:
    """Byte offset where each token starts in the detokenized text."""
    lengths = [len(engine.piece(t)) if t != engine.bos else 0 for t in tokens]
    return np.concatenate([[0], np.cumsum(lengths)[:-1]])


def _read_all_keys(engine: Engine, tokens: list[int]) -> dict[int, np.ndarray]:
    """De-roped keys of every layer for `tokens` (BOS first), in windows the context holds.

    Each window restarts from BOS, as ikv's own hot window would see the text.
    """
    step = max(engine.n_ctx - 8, 16)
    body = tokens[1:]
    parts: dict[int, list[np.ndarray]] = {lay.index: [] for lay in engine.facts.layers}
    for start in range(0, max(len(body), 1), step):
        chunk = [tokens[0], *body[start : start + step]]
        engine.clear()
        engine.decode(chunk, 0, logits_last=False)
        state = read_cells(engine, 0, len(chunk))
        for lay in engine.facts.layers:
            pos, rows = state.layer(lay.index)
            keys = unrope(rows.k, pos, lay, engine.facts.rope_type, engine.facts.rope)
            parts[lay.index].append(keys if start == 0 else keys[1:])
    engine.clear()
    return {layer: np.concatenate(p) for layer, p in parts.items()}


def measure(engine: Engine, haystack: Haystack) -> Measurement:
    """Rank every unit on one haystack (it must fit the engine's context)."""
    check_supported(engine.facts.rope_type, engine.facts.rope_scaling)
    tokens = engine.tokenize(haystack.text, add_bos=True)
    keys = _read_all_keys(engine, tokens)
    starts = token_spans(engine, tokens)
    raw = haystack.text.encode()
    needle_tokens, questions, question_keys = [], [], []
    for i, needle in enumerate(haystack.needles):
        a = raw.index(needle.fact.encode())
        b = a + len(needle.fact.encode())
        needle_tokens.append(np.flatnonzero((starts >= a) & (starts < b)))
        for text in filter(None, (needle.question, needle.paraphrase)):
            q = engine.tokenize(text, add_bos=True)
            questions.append((i, text))
            question_keys.append({k: v[1:] for k, v in _read_all_keys(engine, q).items()})
    ranks = []
    for lay in engine.facts.layers:
        if not lay.rope:  # its keys cannot be de-roped exactly (facts.LayerFacts.rope)
            continue
        doc = keys[lay.index][1:]  # BOS is the attention sink, an outlier key
        for head in range(lay.n_head_kv):
            d = doc[:, head, :]
            mean = d.mean(axis=0)
            dn = _normalise(d - mean)
            pcts = []
            for (i, _), qk in zip(questions, question_keys):
                score = (dn @ _normalise(qk[lay.index][:, head, :] - mean).T).max(axis=1)
                best = score[needle_tokens[i] - 1].max()
                pcts.append(float((score > best).mean()))
            ranks.append(UnitRank(lay.index, head, pcts))
    ranks.sort(key=lambda r: (r.mean, r.worst))
    return Measurement(len(tokens), ranks, needle_tokens, keys, questions, question_keys)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def calibration_haystack() -> Haystack:
    needles = [pass_key_needle(1), *FACT_NEEDLES]
    return build(CALIBRATION_SENTENCES, needles, [0.2, 0.4, 0.6, 0.8], seed=1)


def spec_from(m: Measurement, engine: Engine) -> SketchSpec:
    units, dims = [], []
    for r in m.ranks:
        dim = engine.facts.layers[r.layer].head_dim_k
        if dims and sum(dims) + dim > MAX_SKETCH_DIM:
            break
        units.append((r.layer, r.head))
        dims.append(dim)
    means = tuple(
        tuple(float(x) for x in m.keys[layer][1:, head, :].mean(axis=0)) for layer, head in units
    )
    return SketchSpec(
        units=tuple(units),
        head_dims=tuple(dims),
        means=means,
        seed=SKETCH_SEED,
        chosen_by=f"needle ranking on {m.n_tokens:,} tokens, {len(m.needle_tokens)} needles",
    )


def _cached_spec(path: Path) -> SketchSpec | None:
    if path.is_file():
        try:
            return SketchSpec.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is measured again
    return None


def sketch_spec(engine: Engine) -> SketchSpec:
    """The sketch for this model: measured once, then read from the cache dir."""
    fp = model_fingerprint(engine)
    path = cache_dir() / "sketch" / f"{fp['sha']}.json"

    def make() -> SketchSpec:
        hay = calibration_haystack()
        if engine.n_ctx < CALIBRATION_CTX:  # read in one window, whatever the caller's context
            with Engine(engine.path, EngineConfig(n_ctx=CALIBRATION_CTX, n_seq_max=SCRATCH_SEQ + 1,
                                                  n_threads=engine.config.n_threads,
                                                  n_gpu_layers=engine.config.n_gpu_layers)) as big:
                m = measure(big, hay)
        else:
            m = measure(engine, hay)
        spec = spec_from(m, engine)
        files.write_atomic(path, json.dumps({**spec.to_dict(),
                                             "ranks": [asdict(r) for r in m.ranks]}).encode())
        return spec

    return files.made_once(path.with_suffix(".lock"), lambda: _cached_spec(path), make)
