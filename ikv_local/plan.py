"""The memory budget: which window and KV cache types fit `--kv-budget`, largest window first.

ikv keeps the sliding-window layers' cache full-size (a trimmed one cannot shift), so every
layer holds every cell of the window: the hot KV costs n_ctx × (K + V row bytes over all
layers). llama.cpp pads the context to a multiple of 256 cells, and a quantized V cache needs
flash attention (llama.cpp turns it on when left to decide). The archive costs 104 bytes per
token on disk and nothing in the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts
from ikv_local.kvcost import bytes_per_token
from ikv_local.sizes import format_size

PAD = 256  # llama.cpp: cparams.n_ctx = GGML_PAD(n_ctx, 256)
PAIRS = (("f16", "f16"), ("q8_0", "q8_0"), ("q8_0", "q4_0"), ("q4_0", "q4_0"))
class BudgetTooSmall(IkvError):
    exit_code = 3


@dataclass(frozen=True)
class Option:
    type_k: str
    type_v: str
    n_ctx: int  # the window, in cells
    bytes_per_cell: int
    kl: float | None = None  # measured damage against f16 (mean KL of next-token distributions)

    @property
    def kv_bytes(self) -> int:
        return self.n_ctx * self.bytes_per_cell

    @property
    def flash_attn(self) -> bool:
        """llama.cpp stores a quantized V only with flash attention."""
        return self.type_v not in ("f16", "f32", "bf16")

    def to_dict(self) -> dict[str, object]:
        return {"type_k": self.type_k, "type_v": self.type_v, "n_ctx": self.n_ctx,
                "kv_bytes": self.kv_bytes, "flash_attn": self.flash_attn, "kl": self.kl}


def options(layers: Sequence[LayerFacts], budget: int, n_ctx_max: int, *, min_ctx: int = 512,
            quality: Mapping[tuple[str, str], float] | None = None) -> list[Option]:
    """Every cache pair with the largest padded window inside the budget, largest first."""
    found = []
    for type_k, type_v in PAIRS:
        try:
            per_cell = bytes_per_token(layers, type_k, type_v)
        except IkvError:  # head dims that the type's blocks do not divide
            continue
        n_ctx = min(budget // per_cell // PAD * PAD, n_ctx_max // PAD * PAD)
        if n_ctx >= min_ctx:
            found.append(Option(type_k, type_v, n_ctx, per_cell,
                                None if quality is None else quality.get((type_k, type_v))))
    return sorted(found, key=lambda o: (-o.n_ctx, o.kl if o.kl is not None else float("inf")))


def acceptable(option: Option, max_kl: float) -> bool:
    """f16 is the reference; a quantized pair only with a measured damage inside the bound."""
    if option.type_k == option.type_v == "f16":
        return True
    return option.kl is not None and option.kl <= max_kl


def choose(found: Sequence[Option], budget: int, max_kl: float) -> Option:
    """The largest window among the acceptable options."""
    for option in found:  # largest window first
        if acceptable(option, max_kl):
            return option
    if not found:
        raise BudgetTooSmall(f"a KV budget of {format_size(budget)} holds no window of "
                             "512 cells or more at any cache type; raise --kv-budget")
    raise BudgetTooSmall(f"a KV budget of {format_size(budget)} fits only cache types whose "
                         f"measured damage is above {max_kl:g} (or unmeasured); raise --kv-budget")
