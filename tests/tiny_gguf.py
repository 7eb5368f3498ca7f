"""Tiny random-weight GGUF models, one per model family, for checking llama.cpp's RoPE.

The weights are random and small (embedding 64-256, 2-6 layers, a few heads), but every
hyperparameter and tensor that decides how llama.cpp rotates keys is set as the family's real
GGUFs carry it: head size and n_rot, rope base, scaling type and factor, original context,
sliding-window layout, and the per-pair factor tensors (Llama 3.1's `rope_freqs`, Phi-3.5's
`rope_factors_long`/`_short`). The vocabulary is copied from a real GGUF so the file tokenizes:
`spm` the Gemma 3 demo model's SentencePiece vocab (262,144 tokens), `bpe` SmolLM2's (49,152).

    python tests/tiny_gguf.py SPM.gguf BPE.gguf OUT_DIR    # every family, 5-26 MB each
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf.quants import quantize
from gguf_read import reader


@dataclass(frozen=True)
class _Spec:
    arch: str
    vocab: str  # "spm" | "bpe"
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    base: float
    n_layer: int = 2
    n_ff: int = 128
    keys: Mapping[str, Any] = field(default_factory=dict)  # more "<arch>.*" keys, as written
    parts: frozenset[str] = frozenset()  # optional tensor groups, see _layer()


def _parts(*names: str) -> frozenset[str]:
    return frozenset(names)


_YARN_QWEN = {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
              "rope.scaling.original_context_length": 32768}
_GEMMA = _parts("post_norms")

_SPECS: dict[str, _Spec] = {
    # Llama 2 layout on Gemma's SentencePiece vocab; n_rot must equal the head size for `llama`
    "llama-spm": _Spec("llama", "spm", 64, 2, 1, 64, 4096, 10000.0,
                       keys={"rope.dimension_count": 64}),
    # SmolLM2-135M: head 64, base 100000
    "llama-bpe": _Spec("llama", "bpe", 128, 2, 1, 64, 8192, 100000.0,
                       keys={"rope.dimension_count": 64}),
    # Llama 3.1: head 128, base 500000, 128k context, "llama3" scaling baked into rope_freqs
    "llama3-freqs": _Spec("llama", "bpe", 256, 2, 1, 128, 131072, 500000.0,
                          keys={"rope.dimension_count": 128}, parts=_parts("rope_freqs")),
    # Qwen2.5-0.5B: head 64 = n_embd / n_head (qwen2 has no key_length), base 1e6, q/k/v biases
    "qwen2": _Spec("qwen2", "bpe", 128, 2, 1, 64, 32768, 1000000.0, parts=_parts("qkv_bias")),
    "qwen2-yarn": _Spec("qwen2", "bpe", 128, 2, 1, 64, 131072, 1000000.0, keys=_YARN_QWEN,
                        parts=_parts("qkv_bias")),
    # Qwen3: head 128 set apart from n_embd / n_head, q/k RMS norms
    "qwen3": _Spec("qwen3", "bpe", 64, 2, 1, 128, 40960, 1000000.0, parts=_parts("qk_norm")),
    # Mistral Nemo / Small 3: `llama` arch, head 128 while n_embd / n_head is 32, GQA 4:2
    "mistral": _Spec("llama", "bpe", 128, 4, 2, 128, 131072, 1000000.0,
                     keys={"rope.dimension_count": 128}),
    # Ministral 3: YaRN x16 from 16k, log multiplier 1, Llama 4 style query temperature
    "mistral3": _Spec("mistral3", "bpe", 128, 4, 2, 128, 262144, 1000000.0, keys={
        "rope.dimension_count": 128, "rope.scaling.type": "yarn", "rope.scaling.factor": 16.0,
        "rope.scaling.original_context_length": 16384, "rope.scaling.yarn_beta_fast": 32.0,
        "rope.scaling.yarn_beta_slow": 1.0, "rope.scaling.yarn_log_multiplier": 1.0,
        "attention.temperature_scale": 0.1}),
    # Phi-3.5-mini: head 96, fused qkv, LongRoPE factors picked by context (short up to 4096)
    "phi3": _Spec("phi3", "bpe", 192, 2, 2, 96, 131072, 10000.0, keys={
        "rope.dimension_count": 96, "rope.scaling.original_context_length": 4096,
        "rope.scaling.attn_factor": math.sqrt(1 + math.log(32) / math.log(4096)),
        "attention.sliding_window": 262144}, parts=_parts("fused_qkv", "longrope")),
    # Gemma 2: head 256, sliding window 4096 on even layers, soft-capping
    "gemma2": _Spec("gemma2", "spm", 64, 2, 1, 256, 8192, 10000.0, n_layer=4, keys={
        "attention.sliding_window": 4096, "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0}, parts=_GEMMA),
    # Gemma 3 4B+: five 1024-token SWA layers (base 10000, llama.cpp's default) then one global
    # layer at base 1e6 with linear scaling x8
    "gemma3": _Spec("gemma3", "spm", 64, 2, 1, 256, 131072, 1000000.0, n_layer=6, keys={
        "attention.sliding_window": 1024, "rope.scaling.type": "linear",
        "rope.scaling.factor": 8.0}, parts=_GEMMA | _parts("qk_norm")),
    # gpt-oss: head 64, YaRN x32 from 4096 on every layer, sinks, window 128 on even layers
    "gpt-oss": _Spec("gpt-oss", "bpe", 64, 2, 1, 64, 131072, 150000.0, n_layer=4, n_ff=64, keys={
        "attention.sliding_window": 128, "rope.scaling.type": "yarn", "rope.scaling.factor": 32.0,
        "rope.scaling.original_context_length": 4096, "expert_count": 4,
        "expert_used_count": 2, "expert_feed_forward_length": 64},
        parts=_parts("qkv_bias", "moe")),
    # SmolLM3: llama-style, every 4th layer without rope (NoPE)
    "smollm3": _Spec("smollm3", "bpe", 128, 2, 1, 64, 65536, 5000000.0, n_layer=4),
    # Qwen2-VL: multi-axis rope (M-RoPE), which ikv refuses in one line
    "qwen2vl": _Spec("qwen2vl", "bpe", 128, 2, 1, 64, 32768, 1000000.0,
                     keys={"rope.dimension_sections": [8, 12, 12, 0]}, parts=_parts("qkv_bias")),
}

REFUSED: tuple[str, ...] = ("qwen2vl",)  # families whose keys ikv cannot de-rope
FAMILIES: tuple[str, ...] = tuple(f for f in _SPECS if f not in REFUSED)
_NORM_ROPE = {"llama", "mistral3", "smollm3"}  # the rest rotate neox-style (pairs i, i + n/2)
_SWA_PATTERN = {"gemma2": 2, "gpt-oss": 2, "gemma3": 6}  # llama.cpp's defaults: last of n is global


def llama3_rope_freqs(head_dim: int, base: float = 500000.0, factor: float = 8.0,
                      low_freq_factor: float = 1.0, high_freq_factor: float = 4.0,
                      old_context_len: int = 8192) -> np.ndarray:
    """Llama 3.1's per-pair divisors, as convert_hf_to_gguf.py writes them into rope_freqs."""
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen = old_context_len / low_freq_factor
    high_wavelen = old_context_len / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (
                high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def phi3_rope_factors(n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(long, short) LongRoPE factors shaped like Phi-3.5's: long climbs 1 -> 40, short 1 -> 1.5."""
    t = np.linspace(0.0, 1.0, n_pairs)
    long = np.geomspace(1.0, 40.0, n_pairs)
    short = 1.0 + 0.5 * t**3
    return long.astype(np.float32), short.astype(np.float32)


def expected(family: str) -> dict[str, Any]:
    """What llama.cpp should report for the tiny model of `family` (its print_info names)."""
    s = _SPECS[family]
    k = s.keys
    pattern = _SWA_PATTERN.get(s.arch)
    swa = [i for i in range(s.n_layer) if pattern and i % pattern < pattern - 1]
    scaling = k.get("rope.scaling.type", "linear")  # llama.cpp's default when the key is absent
    scale = 1.0 / k.get("rope.scaling.factor", 1.0)
    # Gemma 3's local layers keep llama.cpp's defaults; Gemma 2 and gpt-oss copy the global rope
    swa_base, swa_scale = (10000.0, 1.0) if s.arch == "gemma3" else (s.base, scale)
    return {
        "arch": s.arch,
        "vocab": s.vocab,
        "n_vocab": 262144 if s.vocab == "spm" else 49152,
        "n_layer": s.n_layer,
        "n_embd": s.n_embd,
        "n_head": s.n_head,
        "n_head_kv": s.n_head_kv,
        "head_dim": s.head_dim,
        "n_rot": k.get("rope.dimension_count", s.head_dim),
        "rope": "norm" if s.arch in _NORM_ROPE else "neox",
        "rope_scaling": scaling,
        "freq_base": s.base,
        "freq_scale": scale,
        "swa_layers": swa,
        "n_swa": k.get("attention.sliding_window", 0) if swa else 0,
        "freq_base_swa": swa_base if swa else None,
        "freq_scale_swa": swa_scale if swa else None,
        "n_ctx_train": s.n_ctx,
        "n_ctx_orig_yarn": k.get("rope.scaling.original_context_length", s.n_ctx),
        "rope_attn_factor": k.get("rope.scaling.attn_factor", 1.0),
        "rope_freqs": "rope_freqs" in s.parts,
        "rope_factors_long": "longrope" in s.parts,
        "rope_factors_short": "longrope" in s.parts,
        "nope_layers": [i for i in range(s.n_layer) if s.arch == "smollm3" and (i + 1) % 4 == 0],
    }


@lru_cache(maxsize=4)
def _vocab(path: Path) -> tuple[tuple[str, Any, GGUFValueType, GGUFValueType | None], ...]:
    """The `tokenizer.*` fields of a GGUF as (key, value, type, array item type)."""
    out = []
    for key, f in reader(path).fields.items():
        if key.startswith("tokenizer."):
            vtype = GGUFValueType(f.types[0])
            sub = GGUFValueType(f.types[-1]) if vtype == GGUFValueType.ARRAY else None
            out.append((key, f.contents(), vtype, sub))
    return tuple(out)


def _add_key(w: GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, list):
        w.add_array(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    else:
        w.add_uint32(key, int(value))


class _Weights:
    def __init__(self, w: GGUFWriter, seed: int) -> None:
        self.w, self.rng = w, np.random.default_rng(seed)

    def rand(self, name: str, *shape: int, dtype: type = np.float16) -> None:
        """A random tensor; numpy shape is ggml's ne reversed (rows = ne1)."""
        self.w.add_tensor(name, (self.rng.standard_normal(shape) * 0.05).astype(dtype))

    def ones(self, name: str, n: int) -> None:
        self.w.add_tensor(name, np.ones(n, np.float32))


def _layer(t: _Weights, s: _Spec, i: int) -> None:
    p, e, ff = f"blk.{i}.", s.n_embd, s.n_ff
    q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    t.ones(p + "attn_norm.weight", e)
    if "fused_qkv" in s.parts:
        t.rand(p + "attn_qkv.weight", q + 2 * kv, e)
    else:
        for name, rows in (("attn_q", q), ("attn_k", kv), ("attn_v", kv)):
            t.rand(p + name + ".weight", rows, e)
            if "qkv_bias" in s.parts:
                t.rand(p + name + ".bias", rows, dtype=np.float32)
    if "qk_norm" in s.parts:
        t.ones(p + "attn_q_norm.weight", s.head_dim)
        t.ones(p + "attn_k_norm.weight", s.head_dim)
    t.rand(p + "attn_output.weight", e, q)
    if "moe" in s.parts:  # gpt-oss: sinks, biases everywhere, router + 3D expert tensors
        n_exp = int(s.keys["expert_count"])
        t.rand(p + "attn_output.bias", e, dtype=np.float32)
        t.rand(p + "attn_sinks.weight", s.n_head, dtype=np.float32)
        t.ones(p + "post_attention_norm.weight", e)
        t.rand(p + "ffn_gate_inp.weight", n_exp, e, dtype=np.float32)
        t.rand(p + "ffn_gate_inp.bias", n_exp, dtype=np.float32)
        for name, shape in (("ffn_gate_exps", (ff, e)), ("ffn_up_exps", (ff, e)),
                            ("ffn_down_exps", (e, ff))):
            t.rand(p + name + ".weight", n_exp, *shape)
            t.rand(p + name + ".bias", n_exp, shape[0], dtype=np.float32)
        return
    if "post_norms" in s.parts:
        t.ones(p + "post_attention_norm.weight", e)
    t.ones(p + "ffn_norm.weight", e)
    if "fused_qkv" in s.parts:  # phi3 also fuses gate and up
        t.rand(p + "ffn_up.weight", 2 * ff, e)
    else:
        t.rand(p + "ffn_gate.weight", ff, e)
        t.rand(p + "ffn_up.weight", ff, e)
    t.rand(p + "ffn_down.weight", e, ff)
    if "post_norms" in s.parts:
        t.ones(p + "post_ffw_norm.weight", e)


def write(family: str, out: Path, *, spm: Path, bpe: Path) -> Path:
    """Write the tiny model of `family` to `out`; vocabularies are copied from real GGUFs:
    `spm` a SentencePiece-vocab GGUF (the Gemma 3 demo model), `bpe` a BPE-vocab GGUF (SmolLM2)."""
    s = _SPECS[family]
    vocab = _vocab(Path(spm if s.vocab == "spm" else bpe))
    n_vocab = next(len(v) for k, v, _, _ in vocab if k == "tokenizer.ggml.tokens")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(out, arch=s.arch)
    # not "phi3": llama.cpp retunes the tokens of a model so named, and needs Phi's "</s>" for it
    w.add_string("general.name", f"tiny random {family}".replace("phi3", "Phi 3.5"))
    a = s.arch
    for key, value in {"context_length": s.n_ctx, "embedding_length": s.n_embd,
                       "block_count": s.n_layer, "feed_forward_length": s.n_ff,
                       "attention.head_count": s.n_head, "attention.head_count_kv": s.n_head_kv,
                       "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": s.base,
                       **s.keys}.items():
        _add_key(w, f"{a}.{key}", value)
    if a not in ("qwen2", "qwen2vl", "phi3"):  # these two derive the head size from n_embd / n_head
        _add_key(w, f"{a}.attention.key_length", s.head_dim)
        _add_key(w, f"{a}.attention.value_length", s.head_dim)
    for key, value, vtype, sub in vocab:
        w.add_key_value(key, value, vtype, sub_type=sub)

    t = _Weights(w, seed=list(_SPECS).index(family))
    emb = (t.rng.standard_normal((n_vocab, s.n_embd)) * 0.05).astype(np.float32)
    w.add_tensor("token_embd.weight", quantize(emb, GGMLQuantizationType.Q8_0),
                 raw_dtype=GGMLQuantizationType.Q8_0)
    del emb
    t.ones("output_norm.weight", s.n_embd)
    if "moe" in s.parts:  # gpt-oss has no tied output
        t.rand("output.weight", n_vocab, s.n_embd)
    n_pairs = int(s.keys.get("rope.dimension_count", s.head_dim)) // 2
    if "rope_freqs" in s.parts:
        w.add_tensor("rope_freqs.weight", llama3_rope_freqs(s.head_dim, s.base))
    if "longrope" in s.parts:
        long, short = phi3_rope_factors(n_pairs)
        w.add_tensor("rope_factors_long.weight", long)
        w.add_tensor("rope_factors_short.weight", short)
    for i in range(s.n_layer):
        _layer(t, s, i)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python tests/tiny_gguf.py SPM.gguf BPE.gguf OUT_DIR")
    spm_path, bpe_path, folder = (Path(x) for x in sys.argv[1:])
    for fam in FAMILIES:
        path = write(fam, folder / f"{fam}.gguf", spm=spm_path, bpe=bpe_path)
        print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB")
