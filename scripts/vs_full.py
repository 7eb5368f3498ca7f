"""Accuracy relative to full context at 4×, 16× and 64× less KV memory (ARKV's comparison).

    python scripts/vs_full.py                  # 3 documents of ~16k tokens, 4 facts each
    python scripts/vs_full.py --docs 1 --tokens 4000   # a quick look

Each document (haystack prose with a pass key and three facts planted at 15/40/65/90%) is read
whole by llama.cpp in one context: full context, the reference. Then, for each ratio, ikv gets
`--kv-budget` = full context's KV ÷ ratio: the planner picks window and cache types, the
document is ingested, and the same questions are asked with recall. Full context's KV is
what llama.cpp allocates by default for the document (f16, every layer full-size); with its
sliding-window layers trimmed it would need less, and that figure is in the receipt too.
Writes receipts/vs_full.json.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from types import SimpleNamespace

from ikv_local import receipt
from ikv_local.ask import ask, question_prompt
from ikv_local.budget import MAX_KL, plan_model
from ikv_local.engine import Engine, EngineConfig
from ikv_local.haystack import FACT_NEEDLES, Needle, build, names, pass_key_needle
from ikv_local.ingest import ingest
from ikv_local.kvcost import kv_bytes
from ikv_local.model_file import resolve_model
from ikv_local.passkey import TOKENS_PER_SENTENCE
from ikv_local.paths import temporary_home
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session

DEPTHS = [0.15, 0.4, 0.65, 0.9]
MAX_TOKENS = 12


def ok(answer: str, needle: Needle | str) -> bool:
    return names(answer, needle if isinstance(needle, str) else needle.answer)


def summarise(rows: list[dict], ratios: list[int]) -> list[dict[str, object]]:  # type: ignore[type-arg]
    out = []
    for ratio in ratios:
        full_ok = sum(x["ok"] for r in rows for x in r["full"])
        ikv_ok = sum(x["ok"] for r in rows for i in r["ikv"] if i["ratio"] == ratio for x in i["answers"])
        n_q = sum(len(r["full"]) for r in rows)
        out.append({"ratio": ratio, "questions": n_q, "full_correct": full_ok, "ikv_correct": ikv_ok,
                    "relative": round(ikv_ok / full_ok, 3) if full_ok else None})
    return out


def rescore(out_dir: str) -> int:
    """Score the stored answers again with `ok` (the receipt keeps every answer)."""
    import json
    from pathlib import Path

    from ikv_local.haystack import FACT_NEEDLES

    file = Path(out_dir) / "vs_full.json"
    data = json.loads(file.read_text())
    rows = data["results"]["docs"]
    wanted = {n.question: n.answer for n in FACT_NEEDLES}
    for r in rows:
        key_answer = pass_key_needle(100 + r["doc"]).answer
        for x in [*r["full"], *(a for i in r["ikv"] for a in i["answers"])]:
            x["ok"] = ok(x["answer"], wanted.get(x["q"], key_answer))
    data["results"]["summary"] = summarise(rows, sorted({i["ratio"] for r in rows for i in r["ikv"]}))
    data["results"]["scoring"] = "whole word or number (scripts/vs_full.py ok)"
    file.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data["results"]["summary"]))
    return 0


def full_context(path: str, text: str, needles: list[Needle]) -> tuple[list[str], int, int, int]:
    """Answers with the whole document in one f16 context; its KV bytes, default and trimmed."""
    with Engine(path, EngineConfig(n_ctx=256, n_seq_max=1)) as probe:
        n = len(probe.tokenize(text, add_bos=True))
        facts = probe.facts
        # the turn exactly as `ikv ask` writes it (question_prompt reads only .engine)
        prompts = [question_prompt(SimpleNamespace(engine=probe), nd.question)[0] for nd in needles]  # type: ignore[arg-type]
    n_ctx = n + 128
    answers = []
    with Engine(path, EngineConfig(n_ctx=n_ctx, n_seq_max=1)) as e:
        doc = e.tokenize(text, add_bos=True)
        e.decode(doc, 0, logits_last=False)
        for prompt in prompts:
            q = e.tokenize(prompt, special=True)
            out = list(e.generate(q, len(doc), SamplingParams.greedy(), MAX_TOKENS))
            answers.append(e.detokenize(out))
            e.seq_rm(0, len(doc), -1)
        allocated = e.n_ctx * kv_bytes(facts.layers, 1)
    trimmed = kv_bytes(facts.layers, n_ctx, swa_window=facts.n_swa or None)
    return answers, n, allocated, trimmed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16000)
    ap.add_argument("--ratios", default="4,16,64")
    ap.add_argument("--max-kl", type=float, default=MAX_KL)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="receipts")
    ap.add_argument("--rescore", action="store_true", help="score the receipt's stored answers again")
    a = ap.parse_args()
    if a.rescore:
        return rescore(a.out)
    path = str(resolve_model(a.model))
    ratios = [int(r) for r in a.ratios.split(",")]
    rows, hashes = [], []
    log = lambda line: print(line, flush=True)  # noqa: E731
    with temporary_home("ikv-vs-full-") as home:
        for d in range(a.docs):
            needles = [pass_key_needle(100 + d), *FACT_NEEDLES]
            hay = build(round(a.tokens / TOKENS_PER_SENTENCE), needles, DEPTHS, seed=200 + d)
            doc = home / f"doc{d}.txt"
            doc.write_text(hay.text)
            hashes.append(hashlib.sha256(hay.text.encode()).hexdigest())
            t = time.perf_counter()
            answers, n, full_bytes, trimmed = full_context(path, hay.text, needles)
            full_s = time.perf_counter() - t
            row = {"doc": d, "tokens": n, "full_kv_bytes": full_bytes, "full_kv_trimmed_bytes": trimmed,
                   "full": [{"q": nd.question, "answer": ans, "ok": ok(ans, nd)} for nd, ans in zip(needles, answers)],
                   "full_seconds": round(full_s, 1), "ikv": []}
            log(f"doc {d}: {n:,} tokens; full context ({full_bytes / 2**20:.1f} MiB KV): "
                f"{sum(x['ok'] for x in row['full'])}/{len(needles)} in {full_s:.0f} s")
            for ratio in ratios:
                budget = full_bytes // ratio
                plan = plan_model(path, budget, max_kl=a.max_kl)
                c = plan.chosen
                name = f"d{d}r{ratio}"
                with Session(name, OpenOptions(model=path, create=True, n_ctx=c.n_ctx,
                                               type_k=c.type_k, type_v=c.type_v)) as s:
                    t = time.perf_counter()
                    ingest(s, [doc])
                    ingest_s = time.perf_counter() - t
                    kv = s.kv_bytes
                with Session(name, OpenOptions(model=path, writable=False)) as s:
                    got = [ask(s, nd.question, max_tokens=MAX_TOKENS) for nd in needles]
                hits = [ok(g.text, nd) for g, nd in zip(got, needles)]
                row["ikv"].append({
                    "ratio": ratio, "budget_bytes": budget, "kv_bytes": kv, "window": c.n_ctx,
                    "type_k": c.type_k, "type_v": c.type_v, "ingest_seconds": round(ingest_s, 1),
                    "answers": [{"q": nd.question, "answer": g.text, "ok": h,
                                 "in_slot": nd.found_in(sp.text for sp in g.recalled)}
                                for nd, g, h in zip(needles, got, hits)]})
                log(f"  {ratio}x less ({kv / 2**20:.1f} MiB: {c.n_ctx:,} cells {c.type_k}/{c.type_v}): "
                    f"{sum(hits)}/{len(needles)} in {ingest_s:.0f} s")
            rows.append(row)
            summary = summarise(rows, ratios)
            out = receipt.write(
                "vs_full", {"summary": summary, "docs": rows},
                {"model_sha256": receipt.file_sha256(path), "model": path.rsplit("/", 1)[-1],
                 "documents_sha256": hashlib.sha256("".join(hashes).encode()).hexdigest()},
                "python scripts/vs_full.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    print("| KV vs full context | questions | full context | ikv | relative |")
    for s_ in summary:
        print(f"| {s_['ratio']}× less | {s_['questions']} | {s_['full_correct']} | {s_['ikv_correct']} | "
              f"{s_['relative']} |")
    print(f"receipt: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
