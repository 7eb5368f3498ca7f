"""Undo rotary position embeddings on keys read out of the KV cache.

A cached key is RoPE(k, pos): pairs of dimensions rotated by pos · θ_i. Rotating back by the
cell's position gives a key that depends on the text, not on where it sat, so keys of the same
text at two positions compare equal. Follows ggml's rope for the `norm` (adjacent pairs) and
`neox` (first half with second half) layouts, with linear frequency scaling; dimensions past
`n_rot` are not rotated.
"""

from __future__ import annotations

import numpy as np

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts

SUPPORTED = ("norm", "neox")


def check_supported(rope_type: str, rope_scaling: str) -> None:
    """One clear line for a model whose keys we cannot de-rope yet."""
    if rope_type not in SUPPORTED:
        raise IkvError(f"cannot undo '{rope_type}' rotary embeddings: ikv supports {SUPPORTED}")
    if rope_scaling not in ("none", "linear"):
        raise IkvError(f"cannot undo rope scaling '{rope_scaling}' yet (supported: none, linear)")


def angles(positions: np.ndarray, layer: LayerFacts) -> np.ndarray:
    """θ for each position and rotated pair, float64: positions reach millions."""
    half = layer.n_rot // 2
    inv_freq = layer.rope_base ** (-2.0 * np.arange(half, dtype=np.float64) / layer.n_rot)
    return positions.astype(np.float64)[:, None] * (layer.rope_scale * inv_freq)[None, :]


def unrope(keys: np.ndarray, positions: np.ndarray, layer: LayerFacts, rope_type: str) -> np.ndarray:
    """keys [n, heads, head_dim] as stored at `positions` -> the same keys at position 0."""
    if rope_type not in SUPPORTED:
        raise IkvError(f"cannot undo '{rope_type}' rotary embeddings")
    n_rot = layer.n_rot
    theta = angles(positions, layer)
    cos = np.cos(theta).astype(np.float32)[:, None, :]
    sin = np.sin(theta).astype(np.float32)[:, None, :]
    if rope_type == "neox":
        first, second = np.s_[..., : n_rot // 2], np.s_[..., n_rot // 2 : n_rot]
    else:
        first, second = np.s_[..., 0:n_rot:2], np.s_[..., 1:n_rot:2]
    y1, y2 = keys[first], keys[second]
    out = keys.astype(np.float32, copy=True)
    out[first] = y1 * cos + y2 * sin
    out[second] = y2 * cos - y1 * sin
    return out
