"""GPU checks for ikv (run on a machine with a CUDA build of llama-cpp-python): CUDA backend, readout from a GPU-resident KV cache
(same keys as the CPU's), a session ingest/ask/chat with -ngl 99, all on a tiny random
Gemma 3 with the demo model's tokenizer."""
# ruff: noqa: E402, E701, E702, E741  (a flat device script: each step prints before its imports, to place a crash)
import json
import os
import subprocess
import sys
import tempfile
import time
import numpy as np

MODEL = os.path.abspath(os.environ.get("IKV_TINY_MODEL", ".dev/tiny.gguf"))
out = {}
print("step: import", flush=True)
import llama_cpp
print("step: system info", flush=True)
from ikv_local.doctor import backends
out["backends"] = backends()
print("step: engines", out, flush=True)
out["llama_cpp"] = llama_cpp.__version__
out["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
from ikv_local.engine import Engine, EngineConfig
from ikv_local.readout import read_cells
from ikv_local.haystack import build, pass_key_needle
text = build(60, [], [], seed=1).text
keys = {}
if len(sys.argv) > 1:  # a child: one engine, keys to a file
    ngl = int(sys.argv[1])
    with Engine(MODEL, EngineConfig(n_ctx=1024, n_gpu_layers=ngl)) as e:
        toks = e.tokenize(text, add_bos=True)[:600]
        t = time.perf_counter(); e.decode(toks, 0); dt = time.perf_counter() - t
        st = read_cells(e, 0, len(toks), values=True)
        arrays = {}
        for i in range(e.facts.n_layer):
            p, r = st.layer(i)
            arrays[f"p{i}"], arrays[f"k{i}"], arrays[f"v{i}"] = p, r.k, r.v
        np.savez(f"/tmp/keys{ngl}.npz", **arrays)
    print("child", ngl, "ok", round(len(toks) / dt, 1), flush=True)
    sys.exit(0)
for ngl in (99, 0):
    r = subprocess.run([sys.executable, "-X", "faulthandler", __file__, str(ngl)], capture_output=True, text=True)
    out[f"engine_ngl{ngl}"] = r.returncode
    print("engine", ngl, r.returncode, r.stdout[-200:], r.stderr[-600:], flush=True)
    if r.returncode == 0:
        z = np.load(f"/tmp/keys{ngl}.npz")
        class R: pass
        keys[ngl] = {}
        for i in range(6):
            rr = R(); rr.k, rr.v = z[f"k{i}"], z[f"v{i}"]
            keys[ngl][i] = (z[f"p{i}"], rr)
print("step: compare", flush=True)
cos = []
for i in (keys[0] if 0 in keys and 99 in keys else []):
    (p0, r0), (p1, r1) = keys[0][i], keys[99][i]
    assert np.array_equal(p0, p1), (i, p0[:5], p1[:5])
    a, b = r0.k.reshape(len(r0.k), -1), r1.k.reshape(len(r1.k), -1)
    cos.append(float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()))
    va, vb = r0.v.reshape(len(r0.v), -1), r1.v.reshape(len(r1.v), -1)
    cos.append(float(((va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)).min()))
out["gpu_vs_cpu_kv_min_cosine"] = round(min(cos), 5) if cos else None
home = tempfile.mkdtemp()
env = {**os.environ, "IKV_HOME": home, "IKV_CACHE": home}
doc = os.path.join(home, "doc.txt")
open(doc, "w").write(build(400, [pass_key_needle(3)], [0.1], seed=3).text)
def ikv(*args, stdin=None):
    r = subprocess.run([sys.executable, "-c", "from ikv_local.cli import main; main()", *args],
                       capture_output=True, text=True, env=env, input=stdin, timeout=300)
    return r.returncode, r.stdout, r.stderr[-800:]
print("step: cli", out, flush=True)
for ngl in ("99", "0"):
    rc, so, se = ikv("ingest", doc, "--session", f"g{ngl}", "-m", MODEL, "-c", "1024", "-ngl", ngl, "--json")
    out[f"ingest_ngl{ngl}"] = json.loads(so) if rc == 0 else {"rc": rc, "err": se}
rc, so, se = ikv("ask", "What is the pass key?", "--session", "g99", "-ngl", "99", "--json", "-n", "8")
out["ask_ngl99"] = {"rc": rc, "recalled": len(json.loads(so)["recalled"]) if rc == 0 else se}
rc, so, se = ikv("chat", "--session", "c99", "-m", MODEL, "-c", "512", "-ngl", "99", "--temp", "0", "-n", "16", "--json",
                 stdin="\n".join(["hello there, how are you today?"] * 30) + "\n")
lines = [json.loads(l) for l in so.splitlines()] if rc == 0 else []
out["chat_ngl99"] = {"rc": rc, "turns": len(lines), "archived": lines[-1]["archived_tokens"] if lines else se}
# the archives of the CPU and GPU ingests hold the same token ids and positions
from ikv_local.archive import Archive
ok = [n for n in ("0", "99") if os.path.exists(os.path.join(home, "sessions", f"g{n}", "archive"))]
a0, a99 = (Archive(os.path.join(home, "sessions", f"g{n}", "archive"), writable=False) for n in (ok[0], ok[-1]))
r0, r99 = a0.records(), a99.records()
out["archive_same_tokens"] = bool(len(r0) == len(r99) and np.array_equal(r0["token"], r99["token"])
                                  and np.array_equal(r0["position"], r99["position"]))
n = min(len(r0), len(r99))
out["archive_sketch_mean_hamming_cpu_vs_gpu_of_512"] = float(
    np.bitwise_count(np.bitwise_xor(np.asarray(r0["sketch"][:n]), np.asarray(r99["sketch"][:n]))).sum(1).mean())
print(json.dumps(out, indent=1))
from ikv_local import receipt
receipt.write("gpu_check", out, {"model": receipt.file_sha256(MODEL)},
              "python scripts/device/gpu_check.py", out_dir=os.environ.get("OUT", "receipts"))
