"""`ikv info`: a model's facts and what its KV cache costs, checked against llama.cpp.

Computed costs come from the per-layer widths (`kvcost`); beside them, llama.cpp's own
figure: the growth of `llama_state_seq_get_size` over a known number of decoded tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ikv_local.engine import Engine, EngineConfig
from ikv_local.facts import ModelFacts
from ikv_local.kvcost import ARCHIVE_BYTES_PER_TOKEN, bytes_per_token, kv_bytes
from ikv_local.support import verdict

INFO_CACHE_TYPES = ("f16", "q8_0", "q4_0")
SIZES = (100_000, 1_000_000)
# each KV cache writes, per cell: i32 position, u32 n_seq_id, one i32 sequence id
STATE_BYTES_PER_CELL = 12


@dataclass(frozen=True)
class CacheCost:
    cache_type: str
    bytes_per_token: int
    measured_bytes_per_token: float | None  # llama.cpp's state growth, less cell metadata
    tokens_100k: int
    tokens_1m: int
    tokens_100k_swa_trimmed: int
    tokens_1m_swa_trimmed: int


@dataclass(frozen=True)
class ModelInfo:
    facts: ModelFacts
    n_ctx: int
    costs: list[CacheCost]
    archive_bytes_per_token: int = ARCHIVE_BYTES_PER_TOKEN

    def to_dict(self) -> dict[str, object]:
        return {
            "facts": self.facts.to_dict(),
            "memory": verdict(self.facts),
            "n_ctx": self.n_ctx,
            "costs": [asdict(c) for c in self.costs],
            "archive_bytes_per_token": self.archive_bytes_per_token,
            "archive_100k": ARCHIVE_BYTES_PER_TOKEN * SIZES[0],
            "archive_1m": ARCHIVE_BYTES_PER_TOKEN * SIZES[1],
        }


def measure_state_bytes_per_token(
    path: Path, cache_type: str, n_tokens: int = 64, n_gpu_layers: int = 0
) -> float:
    """KV bytes per token as llama.cpp's state API counts them, cell metadata removed."""
    config = EngineConfig(
        n_ctx=256, n_batch=n_tokens, n_seq_max=1, type_k=cache_type, type_v=cache_type,
        n_gpu_layers=n_gpu_layers,
    )
    with Engine(path, config) as eng:
        tokens = (eng.tokenize("The archive keeps every token. " * 40) or [eng.bos])[:n_tokens]
        eng.decode(tokens[:1], 0, logits_last=False)
        one = eng.state_size(0)
        eng.decode(tokens[1:], 1, logits_last=False)
        grown = eng.state_size(0) - one
        n_caches = 2 if eng.facts.swa_layers else 1
    return grown / (len(tokens) - 1) - STATE_BYTES_PER_CELL * n_caches


def model_info(engine: Engine, measure: bool = True) -> ModelInfo:
    facts = engine.facts
    window = facts.n_swa if facts.swa_layers else None
    costs = []
    for ct in INFO_CACHE_TYPES:
        measured = (
            measure_state_bytes_per_token(engine.path, ct, n_gpu_layers=engine.config.n_gpu_layers)
            if measure
            else None
        )
        costs.append(
            CacheCost(
                cache_type=ct,
                bytes_per_token=bytes_per_token(facts.layers, ct, ct),
                measured_bytes_per_token=measured,
                tokens_100k=kv_bytes(facts.layers, SIZES[0], ct, ct),
                tokens_1m=kv_bytes(facts.layers, SIZES[1], ct, ct),
                tokens_100k_swa_trimmed=kv_bytes(facts.layers, SIZES[0], ct, ct, window),
                tokens_1m_swa_trimmed=kv_bytes(facts.layers, SIZES[1], ct, ct, window),
            )
        )
    return ModelInfo(facts=facts, n_ctx=engine.n_ctx, costs=costs)
