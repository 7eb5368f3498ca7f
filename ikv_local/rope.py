"""Undo rotary position embeddings on keys read out of the KV cache.

A cached key is RoPE(k, pos): pairs of dimensions rotated by an angle that grows with pos.
Rotating back by the cell's position gives a key that depends on the text, not on where it
sat, so keys of the same text at two positions compare equal. The angles mirror ggml's CPU
rope (`ggml_rope_cache_init` and `rope_yarn` in ggml-cpu/ops.cpp) step for step, in float32
as it computes them: `norm` (adjacent pairs) and `neox` (first half with second half)
layouts, linear frequency scaling, per-pair frequency factors (Llama 3's `rope_freqs`,
LongRoPE's long or short factors) and YaRN's ramp between interpolated and extrapolated
angles. Dimensions past `n_rot` are not rotated. A rotation's magnitude factor (YaRN's
mscale) is left alone: it scales every key of a layer alike.

The angle of a pair is linear in the position, so llama.cpp's context shift (a second rope
by the shift's delta) composes with the first and one rotation back undoes both.
"""

from __future__ import annotations

import math

import numpy as np

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts, RopeFacts

SUPPORTED = ("norm", "neox")
SCALINGS = ("none", "linear", "yarn", "longrope")
WHY_NOT = {
    "mrope": "multi-axis rotary embeddings (vision-language models) rotate by several positions",
    "imrope": "multi-axis rotary embeddings (vision-language models) rotate by several positions",
    "vision": "vision rotary embeddings have no single text position per token",
    "none": "the model has no rotary embeddings; ikv's key sketches need them",
}


def unsupported(rope_type: str, rope_scaling: str) -> str | None:
    """Why ikv cannot de-rope this model's keys, or None when it can."""
    if rope_type not in SUPPORTED:
        why = WHY_NOT.get(rope_type, "ikv does not know how to undo it")
        supported = ", ".join(SUPPORTED)
        return f"cannot undo '{rope_type}' rotary embeddings: {why} (ikv supports {supported})"
    if rope_scaling not in SCALINGS:
        return f"cannot undo rope scaling '{rope_scaling}' (ikv supports {', '.join(SCALINGS)})"
    return None


def check_supported(rope_type: str, rope_scaling: str) -> None:
    """One clear line for a model whose keys we cannot de-rope."""
    why = unsupported(rope_type, rope_scaling)
    if why:
        raise IkvError(why)


def yarn_corr_dims(
    n_rot: int, n_ctx_orig: int, base: float, beta_fast: float, beta_slow: float
) -> tuple[float, float]:
    """ggml_rope_yarn_corr_dims: the pairs where YaRN ramps from extrapolation to interpolation."""

    def dim(beta: float) -> float:
        return float(
            np.float32(n_rot * math.log(n_ctx_orig / (beta * 2 * math.pi)) / (2 * math.log(base)))
        )

    return max(0.0, math.floor(dim(beta_fast))), min(n_rot - 1.0, math.ceil(dim(beta_slow)))


def angles(positions: np.ndarray, layer: LayerFacts, rope: RopeFacts | None = None) -> np.ndarray:
    """θ [n, n_rot/2] for each position and rotated pair, float32 as ggml computes it."""
    rope = rope or RopeFacts()
    f32 = np.float32
    half = layer.n_rot // 2
    theta_scale = f32(layer.rope_base) ** f32(-2.0 / layer.n_rot)
    theta = np.empty((len(positions), half), f32)
    theta[:, 0] = np.asarray(positions).astype(f32)
    theta[:, 1:] = theta_scale
    np.cumprod(theta, axis=1, out=theta)  # theta *= theta_scale, pair after pair
    factors = rope.factors_for(layer)
    if factors is not None:
        theta = theta / np.asarray(factors[:half], dtype=f32)[None, :]
    interp = f32(layer.rope_scale) * theta
    if rope.ext_factor == 0.0:
        return interp
    low, high = yarn_corr_dims(
        layer.n_rot, rope.n_ctx_orig, layer.rope_base, rope.beta_fast, rope.beta_slow
    )
    y = (np.arange(half, dtype=f32) - f32(low)) / f32(max(0.001, high - low))
    mix = (f32(1) - np.clip(y, 0, 1)) * f32(rope.ext_factor)
    return interp * (f32(1) - mix) + theta * mix


def unrope(
    keys: np.ndarray,
    positions: np.ndarray,
    layer: LayerFacts,
    rope_type: str,
    rope: RopeFacts | None = None,
) -> np.ndarray:
    """keys [n, heads, head_dim] as stored at `positions` -> the same keys at position 0."""
    if rope_type not in SUPPORTED:
        raise IkvError(f"cannot undo '{rope_type}' rotary embeddings")
    n_rot = layer.n_rot
    theta = angles(positions, layer, rope).astype(np.float64)
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
