"""KV budgets side by side: what `--kv-budget` plans at each size, and what it buys.

    python scripts/budgets.py                         # 32, 64 and 128 MiB (about an hour on 2 cores)
    python scripts/budgets.py --budgets 32MiB --multiple 4   # a quick look

Per budget: the plan (window, cache types, measured damage), the pass key at `--multiple`×
the planned window (ingested, then asked with recall), and decode tokens/s at a window
three-quarters full for the planned cache types and, beside it, for the f16 plan that the
same budget allows (the baseline: f16 only, no planner). Writes receipts/budgets.json after
every budget, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time

from ikv_local import receipt
from ikv_local.ask import ask
from ikv_local.budget import MAX_KL, plan_model
from ikv_local.engine import Engine, EngineConfig
from ikv_local.ingest import ingest
from ikv_local.model_file import resolve_model
from ikv_local.passkey import ANSWER_PREFIX, QUESTION, document
from ikv_local.paths import temporary_home
from ikv_local.plan import Option
from ikv_local.sizes import parse_size
from ikv_local.session import OpenOptions, Session

DECODE_STEPS = 32


def decode_rate(path: str, option: Option, fill: float = 0.75, runs: int = 3) -> float:
    """Median tokens/s of single-token decodes after the window is `fill` full."""
    with Engine(path, EngineConfig(n_ctx=option.n_ctx, n_seq_max=1, type_k=option.type_k,
                                   type_v=option.type_v, flash_attn=True if option.flash_attn else None)) as e:
        text, _ = document(option.n_ctx, 0.5, 99)
        toks = e.tokenize(text, add_bos=True)[: int(option.n_ctx * fill)]
        e.decode(toks, 0, logits_last=False)
        pos, rates = len(toks), []
        for _ in range(runs):
            t = time.perf_counter()
            for i in range(DECODE_STEPS):
                e.decode([toks[1 + i]], pos + i)
            rates.append(DECODE_STEPS / (time.perf_counter() - t))
            e.seq_rm(0, pos, -1)
    return statistics.median(rates)


def one_budget(path: str, size: str, multiple: int, depth: float, seed: int, max_kl: float,
               log) -> dict[str, object]:  # type: ignore[no-untyped-def]
    budget = parse_size(size)
    plan = plan_model(path, budget, max_kl=max_kl, measure_all=True)
    c = plan.chosen
    f16 = next((o for o in plan.found if o.type_k == o.type_v == "f16"), None)
    log(f"{size}: {plan.summary()}")
    text, key = document(multiple * c.n_ctx, depth, seed)
    with temporary_home("ikv-budgets-") as home:
        doc = home / "doc.txt"
        doc.write_text(text)
        with Session("b", OpenOptions(model=path, create=True, n_ctx=c.n_ctx,
                                      type_k=c.type_k, type_v=c.type_v)) as s:
            t = time.perf_counter()
            result = ingest(s, [doc])
            ingest_s = time.perf_counter() - t
            kv = s.kv_bytes
        with Session("b", OpenOptions(model=path, writable=False)) as s:
            a = ask(s, QUESTION, answer_prefix=ANSWER_PREFIX, max_tokens=8)
    log(f"  pass key at {multiple}x: {result.tokens:,} tokens in {ingest_s:.0f} s; key {key}, "
        f"answer {a.text.strip()!r} {'ok' if key in a.text else 'MISS'}")
    rate = decode_rate(path, c)
    rate_f16 = decode_rate(path, f16) if f16 else None
    log(f"  decode: {rate:.1f} tok/s ({c.type_k}/{c.type_v}, {c.n_ctx:,} cells) vs f16 "
        f"{rate_f16 or 0:.1f} tok/s ({f16.n_ctx if f16 else 0:,} cells)")
    d = plan.damage.get((c.type_k, c.type_v))
    return {
        "budget": size, "budget_bytes": budget, "plan": plan.to_dict(),
        "window": c.n_ctx, "type_k": c.type_k, "type_v": c.type_v, "kv_bytes": kv,
        "kl": d.kl_mean if d else 0.0, "top1_agree": d.top1_agree if d else 1.0,
        "f16_window": f16.n_ctx if f16 else None,
        "passkey": {"multiple": multiple, "depth": depth, "tokens": result.tokens, "key": key,
                    "answer": a.text, "ok": key in a.text,
                    "in_slot": any(key in sp.text for sp in a.recalled),
                    "ingest_tokens_per_s": round(result.tokens / ingest_s, 1),
                    "recall_ms": round(a.recall_seconds * 1000, 1),
                    "doc_sha256": hashlib.sha256(text.encode()).hexdigest()},
        "decode_tokens_per_s": round(rate, 2), "decode_tokens_per_s_f16": round(rate_f16, 2) if rate_f16 else None,
    }


def redo_decode(path: str, out_dir: str) -> int:
    """Decode tokens/s again for every row, planned and f16 side by side, in this one run."""
    import json
    from pathlib import Path

    file = Path(out_dir) / "budgets.json"
    data = json.loads(file.read_text())
    for r in data["results"]["rows"]:
        chosen = r["plan"]["chosen"]
        c = Option(chosen["type_k"], chosen["type_v"], chosen["n_ctx"], chosen["kv_bytes"] // chosen["n_ctx"])
        f16 = next(Option("f16", "f16", o["n_ctx"], o["kv_bytes"] // o["n_ctx"])
                   for o in r["plan"]["options"] if o["type_k"] == o["type_v"] == "f16")
        r["decode_tokens_per_s"] = round(decode_rate(path, c), 2)
        r["decode_tokens_per_s_f16"] = round(decode_rate(path, f16), 2)
        print(f"{r['budget']}: {r['decode_tokens_per_s']} tok/s vs f16 {r['decode_tokens_per_s_f16']}", flush=True)
    data["results"]["decode_measured"] = {
        "command": "python scripts/budgets.py --decode-only",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": receipt.machine(),
        "why": "the passkey run shared the CPU with other work; decode rates were taken again alone"}
    file.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="32MiB,64MiB,128MiB")
    ap.add_argument("--multiple", type=int, default=16)
    ap.add_argument("--depth", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--max-kl", type=float, default=MAX_KL)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="receipts")
    ap.add_argument("--decode-only", action="store_true",
                    help="measure decode again for the rows of an existing receipt (on an idle machine)")
    a = ap.parse_args()
    path = str(resolve_model(a.model))
    if a.decode_only:
        return redo_decode(path, a.out)
    rows: list[dict[str, object]] = []
    for size in a.budgets.split(","):
        rows.append(one_budget(path, size, a.multiple, a.depth, a.seed, a.max_kl,
                               lambda line: print(line, flush=True)))
        out = receipt.write(
            "budgets", {"rows": rows},
            {"model_sha256": receipt.file_sha256(path), "model": path.rsplit("/", 1)[-1],
             "documents_sha256": hashlib.sha256(
                 "".join(str(r["passkey"]["doc_sha256"]) for r in rows).encode()).hexdigest()},  # type: ignore[index]
            "python scripts/budgets.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    print(f"| budget | window | K / V | damage (KL, top-1) | pass key at {a.multiple}× | decode | f16 window | f16 decode |")
    for r in rows:
        p = r["passkey"]
        print(f"| {r['budget']} | {r['window']:,} | {r['type_k']} / {r['type_v']} | "
              f"{r['kl']:.4f}, {r['top1_agree']:.1%} | {'yes' if p['ok'] else 'no'} "  # type: ignore[index]
              f"({p['tokens']:,} tokens) | {r['decode_tokens_per_s']} tok/s | {r['f16_window'] or '—'} | "  # type: ignore[index]
              f"{r['decode_tokens_per_s_f16']} tok/s |")
    print(f"receipt: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
