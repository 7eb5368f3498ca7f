"""What llama.cpp knows about a loaded model, as plain data.

The numbers come from llama.cpp itself, not from our reading of the GGUF: its API for what it
exposes, its own `print_info` report for per-layer hyperparameters and rope bases, and its KV
cache constructor for which layers are sliding-window layers. Architectures differ in what
they derive from defaults (Gemma 3's SWA pattern and local rope base are not in the file), so
asking llama.cpp is the only way to match what it will actually compute.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

ROPE_TYPES = {-1: "none", 0: "norm", 2: "neox", 8: "mrope", 24: "vision", 40: "imrope"}


@dataclass(frozen=True)
class LayerFacts:
    index: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    swa: bool
    rope_base: float
    rope_scale: float
    n_rot: int  # leading dims of each head that carry rotary position
    # False for a no-rope (NoPE) layer: llama.cpp does not rotate its keys when it decodes
    # them, but its context shift still does, so they cannot be de-roped exactly
    rope: bool = True

    @property
    def k_width(self) -> int:
        return self.n_head_kv * self.head_dim_k

    @property
    def v_width(self) -> int:
        return self.n_head_kv * self.head_dim_v


@dataclass(frozen=True)
class RopeFacts:
    """How llama.cpp's context rotates keys beyond each layer's base, scale and n_rot.

    The context's values, not the file's: llama.cpp fills YaRN's defaults (ext_factor 1 under
    YaRN scaling, beta 32 / 1) and picks LongRoPE's long or short factors by the context size.
    """

    ext_factor: float = 0.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    n_ctx_orig: int = 0
    freq_factors: tuple[float, ...] | None = None  # per rotated pair: theta / factor
    factors_from: str = ""  # the GGUF tensor they came from

    def factors_for(self, layer: LayerFacts) -> tuple[float, ...] | None:
        """Every rope-carrying layer shares the one factors tensor (llama.cpp duplicates it)."""
        factors = self.freq_factors
        return factors if factors and len(factors) >= layer.n_rot // 2 else None


@dataclass(frozen=True)
class ModelFacts:
    path: str
    arch: str
    name: str
    description: str
    file_bytes: int
    n_params: int
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    n_ctx_train: int
    rope_type: str
    rope_scaling: str
    n_swa: int
    can_shift: bool
    recurrent: bool
    hybrid: bool
    has_chat_template: bool
    layers: tuple[LayerFacts, ...] = field(default_factory=tuple)
    rope: RopeFacts = field(default_factory=RopeFacts)

    @property
    def swa_layers(self) -> list[int]:
        return [layer.index for layer in self.layers if layer.swa]

    @property
    def global_layers(self) -> list[int]:
        return [layer.index for layer in self.layers if not layer.swa]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["swa_layers"] = self.swa_layers
        d["global_layers"] = self.global_layers
        return d


_INFO = re.compile(r"^print_info:\s+(.+?)\s+=\s+(.*)$")
_CONTEXT = re.compile(r"^llama_context:\s+(\w+)\s+=\s+(\S+)")
_LAYER_DEV = re.compile(r"layer\s+(\d+): dev = ")


def _key_values(lines: list[str], pattern: re.Pattern[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        m = pattern.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_print_info(lines: list[str]) -> dict[str, str]:
    """`print_info: key = value` lines of llama.cpp's model report."""
    return _key_values(lines, _INFO)


def parse_context(lines: list[str]) -> dict[str, str]:
    """`llama_context: key = value` lines: the values the context really runs with."""
    return _key_values(lines, _CONTEXT)


def per_layer(value: str, n_layer: int) -> list[int]:
    """print_info writes a per-layer value once when all layers agree, else as `[a, b, ...]`."""
    if value.startswith("["):
        items = [int(v) for v in value.strip("[]").split(",")]
        return items[:n_layer]
    return [int(value)] * n_layer


_ROT = re.compile(r"attn_rot_([kv]) = (\d)")


def parse_rotation(lines: list[str], head_dim_k: int) -> tuple[int, int]:
    """Sizes of the Walsh-Hadamard blocks llama.cpp rotates stored K and V rows by (0 = none).

    Quantized caches are stored rotated (`attn_rot_k/v` in the cache constructor's log). K uses
    the largest power-of-two block that divides the head size, V blocks of 64
    (`build_input_k_rot` / `build_input_v_rot` in llama-kv-cache.cpp).
    """
    flags = {m.group(1): m.group(2) == "1" for line in lines if (m := _ROT.search(line))}
    k_block = 64
    while head_dim_k > 0 and head_dim_k % (k_block * 2) == 0:
        k_block *= 2
    return (k_block if flags.get("k") else 0), (64 if flags.get("v") else 0)


def parse_cache_layers(lines: list[str]) -> tuple[list[int], list[int]]:
    """Layers that went into the non-SWA cache and into the SWA cache, from context creation.

    The iSWA cache logs 'creating non-SWA KV cache' then 'creating SWA KV cache', and each
    cache logs one 'layer N: dev = ...' line per layer it holds. Without the iSWA lines every
    layer is in the single (non-SWA) cache.
    """
    base: list[int] = []
    swa: list[int] = []
    target = base
    for line in lines:
        if "creating" in line and "SWA KV cache" in line:
            target = base if "non-SWA" in line else swa
            continue
        m = _LAYER_DEV.search(line)
        if m:
            target.append(int(m.group(1)))
    return base, swa
