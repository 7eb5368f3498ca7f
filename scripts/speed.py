"""ikv's ingest and decode speed beside plain llama-cpp-python at the same window.

    python scripts/speed.py            # writes receipts/speed.json

Baselines use llama_cpp.Llama (the high-level class): prefill evaluates the document window
by window (reset between windows, as a tool without context shift must); decode generates
greedily after a window of text. A second prefill baseline reads the document the way
llama.cpp's tools do with context shift (keep BOS, drop half the window when it is full),
on the same raw API ikv uses. ikv ingests the same document into a session (readout,
sketches, archive appends and window shifts included) and answers with `ask` (the window,
recall slot and aging included). Runs alternate A/B; medians of --runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llama_cpp

from ikv_local import receipt
from ikv_local.ask import ask
from ikv_local.engine import Engine, EngineConfig, baseline_loads_as_the_engine
from ikv_local.ingest import ingest
from ikv_local.model_file import resolve_model
from ikv_local.passkey import document
from ikv_local.session import OpenOptions, Session

PROMPT = "\n\nQuestion: Retell the whole story above, person by person, in detail.\nAnswer:"


def plain_prefill(llm: llama_cpp.Llama, tokens: list[int], n_ctx: int) -> float:
    step = n_ctx - 256
    t = time.perf_counter()
    for start in range(0, len(tokens), step):
        llm.reset()
        llm.eval([llm.token_bos(), *tokens[start : start + step]])
    return len(tokens) / (time.perf_counter() - t)


def shift_prefill(engine: Engine, tokens: list[int], n_ctx: int) -> float:
    """llama.cpp's context shift (as llama-cli and the server do): keep BOS, drop half."""
    t = time.perf_counter()
    engine.clear()
    engine.decode([engine.bos], 0, logits_last=False)
    pos, keep = 1, 1
    for start in range(0, len(tokens), 512):
        chunk = tokens[start : start + 512]
        if pos + len(chunk) > n_ctx:
            drop = (pos - keep) // 2
            engine.seq_rm(0, keep, keep + drop)
            engine.seq_add(0, keep + drop, -1, -drop)
            pos -= drop
        engine.decode(chunk, pos, logits_last=False)
        pos += len(chunk)
    return len(tokens) / (time.perf_counter() - t)


def plain_decode(llm: llama_cpp.Llama, context: list[int], n: int) -> float:
    llm.reset()
    llm.eval([llm.token_bos(), *context])
    t = time.perf_counter()
    got = 0
    for _ in range(n):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
        got += 1
    return got / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--ctx-size", type=int, default=2048)
    ap.add_argument("--multiple", type=int, default=4)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    model = resolve_model(None)
    text, _ = document(a.multiple * a.ctx_size, 0.5, 3)
    threads = os.cpu_count() or 1
    baseline_loads_as_the_engine()  # no AMX buffers (engine.model_params)
    llm = llama_cpp.Llama(str(model), n_ctx=a.ctx_size, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=False)
    shifter = Engine(model, EngineConfig(n_ctx=a.ctx_size, n_batch=512, n_seq_max=1))
    recent = tokens[-(a.ctx_size - 768):]  # what ikv's window holds after ingest, roughly
    rows: dict[str, list[float]] = {k: [] for k in
                                    ("plain_prefill", "shift_prefill", "ikv_ingest", "plain_decode", "ikv_decode",
                                     "ikv_recall_ms")}
    with tempfile.TemporaryDirectory(prefix="ikv-speed-") as home:
        os.environ["IKV_HOME"] = home
        path = Path(home) / "doc.txt"
        path.write_text(text)
        for run in range(a.runs):
            rows["plain_prefill"].append(plain_prefill(llm, tokens, a.ctx_size))
            rows["shift_prefill"].append(shift_prefill(shifter, tokens, a.ctx_size))
            with Session(f"r{run}", OpenOptions(create=True, n_ctx=a.ctx_size)) as s:
                got = ingest(s, [path])
                rows["ikv_ingest"].append(got.tokens / got.seconds)
            rows["plain_decode"].append(plain_decode(llm, recent + llm.tokenize(PROMPT.encode(), add_bos=False),
                                                     a.decode_tokens))
            with Session(f"r{run}", OpenOptions(writable=False)) as s:
                ans = ask(s, PROMPT.split("Question: ")[1].split("\n")[0], max_tokens=a.decode_tokens)
                rows["ikv_decode"].append(ans.tokens / ans.decode_seconds)
                rows["ikv_recall_ms"].append(ans.recall_seconds * 1000)
            print({k: round(v[-1], 1) for k, v in rows.items()}, flush=True)
    med = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    results = {
        "n_ctx": a.ctx_size, "document_tokens": len(tokens), "runs": a.runs,
        "medians": med, "all": rows,
        "ingest_vs_plain_prefill": round(med["ikv_ingest"] / med["plain_prefill"], 3),
        "ingest_vs_context_shift_prefill": round(med["ikv_ingest"] / med["shift_prefill"], 3),
        "decode_vs_plain_decode": round(med["ikv_decode"] / med["plain_decode"], 3),
    }
    print(results)
    receipt.write("speed", results,
                  {"model_sha256": receipt.file_sha256(model),
                   "document_sha256": hashlib.sha256(text.encode()).hexdigest()},
                  "python scripts/speed.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
