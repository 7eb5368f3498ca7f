"""The key sketch: 512 sign bits that stand for a token's keys in the archive.

For each chosen (layer, KV head) unit: the de-roped key, minus the model's mean key for that
unit (the largest single win in docs/design.md), L2-normalised; the units concatenated and
multiplied by a seeded Gaussian projection; the signs kept. Hamming distance between sketches
then tracks the angle between the centered keys (sign random projection).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from ikv_local.errors import IkvError
from ikv_local.facts import ModelFacts
from ikv_local.kvstate import SeqState
from ikv_local.rope import unrope

SKETCH_BITS = 512
SKETCH_BYTES = SKETCH_BITS // 8


@dataclass(frozen=True)
class SketchSpec:
    units: tuple[tuple[int, int], ...]  # (layer, kv head), in concatenation order
    head_dims: tuple[int, ...]
    means: tuple[tuple[float, ...], ...]  # per unit, de-roped
    seed: int
    chosen_by: str  # how the units were chosen, e.g. "needle ranking on 1,536 tokens"
    bits: int = SKETCH_BITS

    @property
    def dim(self) -> int:
        return sum(self.head_dims)

    @cached_property
    def projection(self) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(self.seed))
        return rng.standard_normal((self.dim, self.bits)).astype(np.float32)

    def projection_sha(self) -> str:
        return hashlib.sha256(self.projection.tobytes()).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["projection_sha"] = self.projection_sha()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> SketchSpec:
        spec = cls(
            units=tuple(tuple(u) for u in d["units"]),  # type: ignore[union-attr]
            head_dims=tuple(d["head_dims"]),  # type: ignore[arg-type]
            means=tuple(tuple(m) for m in d["means"]),  # type: ignore[union-attr]
            seed=int(d["seed"]),  # type: ignore[arg-type]
            chosen_by=str(d["chosen_by"]),
            bits=int(d.get("bits", SKETCH_BITS)),  # type: ignore[arg-type]
        )
        want = d.get("projection_sha")
        if want is not None and want != spec.projection_sha():
            raise IkvError("this numpy draws a different sketch projection than the archive's")
        return spec

    def key(self) -> str:
        """Short identity of the sketch, for headers and caches."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def unit_keys(state: SeqState, facts: ModelFacts, units: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Positions and, per unit, the de-roped keys [n, head_dim] of the cells all units share."""
    positions: np.ndarray | None = None
    per_layer: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for layer in sorted({u[0] for u in units}):
        pos, rows = state.layer(layer)
        per_layer[layer] = (pos, unrope(rows.k, pos, facts.layers[layer], facts.rope_type, facts.rope))
        positions = pos if positions is None else np.intersect1d(positions, pos)
    assert positions is not None
    out = []
    for layer, head in units:
        pos, keys = per_layer[layer]
        keep = np.isin(pos, positions)
        out.append(keys[keep, head, :])
    return positions, out


def vectors(keys: list[np.ndarray], spec: SketchSpec) -> np.ndarray:
    """Centered, per-unit normalised, concatenated keys [n, dim]."""
    parts = []
    for k, mean in zip(keys, spec.means):
        c = k - np.asarray(mean, dtype=np.float32)
        parts.append(c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts, axis=1)


def encode(vecs: np.ndarray, spec: SketchSpec) -> np.ndarray:
    """Sign bits of the projection, packed: uint8 [n, bits / 8]."""
    return np.packbits(vecs @ spec.projection > 0, axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between packed sketches a [n, B] and b [m, B] -> [n, m]."""
    x = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return np.bitwise_count(x).sum(axis=2, dtype=np.int32)
