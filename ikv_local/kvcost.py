"""Bytes of KV cache per token, by cache type, from a model's per-layer widths.

Row sizes follow ggml: a row of `n` values of a block type takes n / block_size blocks of
type_size bytes (q8_0: 32 values in 34 bytes). The `gguf` package carries ggml's table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts

CACHE_TYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q5_1": GGMLQuantizationType.Q5_1,
    "q5_0": GGMLQuantizationType.Q5_0,
    "q4_1": GGMLQuantizationType.Q4_1,
    "q4_0": GGMLQuantizationType.Q4_0,
    "iq4_nl": GGMLQuantizationType.IQ4_NL,
}
ARCHIVE_BYTES_PER_TOKEN = 104


def cache_type(name: str) -> GGMLQuantizationType:
    try:
        return CACHE_TYPES[name.lower()]
    except KeyError:
        known = ", ".join(CACHE_TYPES)
        raise IkvError(f"unknown KV cache type {name!r}; use one of: {known}") from None


def row_bytes(type_name: str, n: int) -> int:
    block, size = GGML_QUANT_SIZES[cache_type(type_name)]
    if n % block:
        raise IkvError(f"a row of {n} values cannot be stored as {type_name} (blocks of {block})")
    return n // block * size


def bytes_per_token(layers: Iterable[LayerFacts], type_k: str = "f16", type_v: str = "f16") -> int:
    """K and V rows of one token over the given layers."""
    return sum(row_bytes(type_k, lay.k_width) + row_bytes(type_v, lay.v_width) for lay in layers)


def kv_bytes(
    layers: Sequence[LayerFacts],
    n_tokens: int,
    type_k: str = "f16",
    type_v: str = "f16",
    swa_window: int | None = None,
) -> int:
    """KV bytes for `n_tokens`; with `swa_window`, sliding-window layers hold only that many."""
    full = [lay for lay in layers if not (swa_window and lay.swa)]
    swa = [lay for lay in layers if swa_window and lay.swa]
    held_swa = min(n_tokens, swa_window or 0)
    return n_tokens * bytes_per_token(full, type_k, type_v) + held_swa * bytes_per_token(
        swa, type_k, type_v
    )
