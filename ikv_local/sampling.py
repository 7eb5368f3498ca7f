"""Sampling settings and llama.cpp's sampler chain for them.

The chain order is llama.cpp's own default: penalties, top-k, top-p, min-p, temperature,
then a seeded draw. A temperature of 0 or less is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

PENALTY_LAST_N = 64


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0  # llama.cpp's default: off
    seed: int = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a random seed

    @classmethod
    def greedy(cls) -> SamplingParams:
        return cls(temperature=0.0, repeat_penalty=1.0)


def build_sampler(
    params: SamplingParams, n_vocab: int, history: Sequence[int] = ()
) -> llama_cpp.llama_sampler_p:
    """A sampler chain that has already seen the last tokens of `history` (for penalties)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731
    if params.repeat_penalty != 1.0:
        add(llama_cpp.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, params.repeat_penalty, 0.0, 0.0
        ))
    if params.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        if params.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(params.temperature))
        add(llama_cpp.llama_sampler_init_dist(params.seed & 0xFFFFFFFF))
    for token in history[-PENALTY_LAST_N:]:
        llama_cpp.llama_sampler_accept(chain, token)
    return chain
