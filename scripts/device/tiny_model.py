"""A tiny random-weight Gemma 3 with the demo model's own tokenizer, for GPU mechanics checks.

    python scripts/device/tiny_model.py DEMO.gguf tiny.gguf     # about 24 MiB

The demo model (242 MiB) is too large to send to a device machine; this one keeps its
vocabulary and layer pattern (five sliding-window layers, one global) at embedding 64, so
llama.cpp loads it and every KV mechanism can be checked, while its answers mean nothing.
"""
import sys
import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType, GGUFValueType
from gguf.quants import quantize

src, out = sys.argv[1], sys.argv[2]
r = GGUFReader(src)
E, L, H, KV, HD, FF = 64, 6, 2, 1, 64, 128
w = GGUFWriter(out, arch="gemma3")
over = {"gemma3.embedding_length": E, "gemma3.block_count": L, "gemma3.feed_forward_length": FF,
        "gemma3.attention.head_count": H, "gemma3.attention.head_count_kv": KV,
        "gemma3.attention.key_length": HD, "gemma3.attention.value_length": HD,
        "general.name": "tiny random gemma3"}
for k, f in r.fields.items():
    if k.startswith("GGUF.") or k == "general.architecture":
        continue
    vtype = f.types[0]
    val = over.get(k, f.contents())
    if vtype == GGUFValueType.ARRAY:
        w.add_key_value(k, val, vtype, sub_type=f.types[-1])
    else:
        w.add_key_value(k, val, vtype)
rng = np.random.default_rng(0)
def mat(rows, cols):  # numpy (rows=ne1, cols=ne0)
    return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float16)
def norm(n):
    return np.ones(n, np.float32)
V = 262144
emb = (rng.standard_normal((V, E)) * 0.05).astype(np.float32)
w.add_tensor("token_embd.weight", quantize(emb, GGMLQuantizationType.Q8_0),
             raw_dtype=GGMLQuantizationType.Q8_0)
w.add_tensor("output_norm.weight", norm(E))
for i in range(L):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", norm(E))
    w.add_tensor(p + "attn_q.weight", mat(H * HD, E))
    w.add_tensor(p + "attn_k.weight", mat(KV * HD, E))
    w.add_tensor(p + "attn_v.weight", mat(KV * HD, E))
    w.add_tensor(p + "attn_q_norm.weight", norm(HD))
    w.add_tensor(p + "attn_k_norm.weight", norm(HD))
    w.add_tensor(p + "attn_output.weight", mat(E, H * HD))
    w.add_tensor(p + "post_attention_norm.weight", norm(E))
    w.add_tensor(p + "ffn_norm.weight", norm(E))
    w.add_tensor(p + "ffn_gate.weight", mat(FF, E))
    w.add_tensor(p + "ffn_up.weight", mat(FF, E))
    w.add_tensor(p + "ffn_down.weight", mat(E, FF))
    w.add_tensor(p + "post_ffw_norm.weight", norm(E))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
