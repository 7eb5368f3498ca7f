"""How large the recall slot needs to be: recall time and accuracy per slot fill, one session.

    python scripts/slot_cap.py                          # 128 MiB plan, 2x its window, ~25 min on 2 cores
    python scripts/slot_cap.py --budget 32MiB --caps 1088,512,256   # a quick look

A document of `--multiple` x the planned window, with a pass key and three facts planted where
they will have left the window, is ingested once into a session whose slot is a quarter of
the window (the largest default ikv ever had). Each question (and its paraphrase) is then
asked with the slot filled up to each cap in turn, on the same saved window: whether the fact
was recalled into the slot, whether the answer names it, and the recall time (search plus
decoding the slot). Writes receipts/slot_cap.json.
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
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.ingest import ingest
from ikv_local.model_file import resolve_model
from ikv_local.passkey import TOKENS_PER_SENTENCE
from ikv_local.paths import temporary_home
from ikv_local.sizes import parse_size
from ikv_local.recall import RecallSettings
from ikv_local.session import OpenOptions, Session

MAX_TOKENS = 12


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", default="128MiB")
    ap.add_argument("--multiple", type=float, default=2.0)
    ap.add_argument("--depths", default="0.1,0.25,0.4,0.55")
    ap.add_argument("--caps", default="", help="slot fills to try, largest first; default: whole slot, 2048, 1024, 512")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    path = str(resolve_model(a.model))
    plan = plan_model(path, parse_size(a.budget), max_kl=MAX_KL)
    c = plan.chosen
    slot = c.n_ctx // 4
    caps = [int(x) for x in a.caps.split(",")] if a.caps else [slot, 2048, 1024, 512]
    caps = [x for x in caps if x <= slot]
    needles = [pass_key_needle(a.seed), *FACT_NEEDLES[:3]]
    depths = [float(x) for x in a.depths.split(",")]
    hay = build(round(a.multiple * c.n_ctx / TOKENS_PER_SENTENCE), needles, depths, seed=a.seed)
    questions = [(nd.question, nd) for nd in needles] + [(nd.paraphrase, nd) for nd in needles if nd.paraphrase]
    print(f"{a.budget}: {plan.summary()}; slot {slot:,}; caps {caps}", flush=True)
    rows: list[dict[str, object]] = []
    with temporary_home("ikv-slot-cap-") as home:
        doc = home / "doc.txt"
        doc.write_text(hay.text)
        with Session("s", OpenOptions(model=path, create=True, n_ctx=c.n_ctx, type_k=c.type_k,
                                      type_v=c.type_v, slot=slot)) as s:
            t = time.perf_counter()
            result = ingest(s, [doc])
            ingest_s = time.perf_counter() - t
        print(f"ingested {result.tokens:,} tokens in {ingest_s:.0f} s", flush=True)
        with Session("s", OpenOptions(model=path, writable=False)) as s:
            for q, nd in questions:
                for cap in caps:
                    g = ask(s, q, max_tokens=MAX_TOKENS, settings=RecallSettings(slot_max=cap))
                    rows.append({"cap": cap, "q": q, "answer": g.text, "ok": nd.named_in(g.text),
                                 "in_slot": nd.found_in(sp.text for sp in g.recalled),
                                 "recall_ms": round(g.recall_seconds * 1000, 1)})
                    print(f"  cap {cap:>5}: {rows[-1]['recall_ms']:>8.0f} ms in_slot={rows[-1]['in_slot']} "
                          f"ok={rows[-1]['ok']} {q[:40]!r} -> {g.text.strip()[:30]!r}", flush=True)
    summary = []
    for cap in caps:
        mine = [r for r in rows if r["cap"] == cap]
        summary.append({"cap": cap, "questions": len(mine), "in_slot": sum(bool(r["in_slot"]) for r in mine),
                        "ok": sum(bool(r["ok"]) for r in mine),
                        "recall_ms_median": statistics.median(float(r["recall_ms"]) for r in mine)})  # type: ignore[arg-type]
    out = receipt.write(
        "slot_cap", {"plan": plan.to_dict(), "slot": slot, "tokens": result.tokens,
                     "ingest_seconds": round(ingest_s, 1), "summary": summary, "asks": rows},
        {"model_sha256": receipt.file_sha256(path), "model": path.rsplit("/", 1)[-1],
         "document_sha256": hashlib.sha256(hay.text.encode()).hexdigest()},
        "python scripts/slot_cap.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    print("| slot filled up to | fact in slot | answer names it | recall (median) |")
    for x in summary:
        print(f"| {x['cap']:,} tokens | {x['in_slot']}/{x['questions']} | {x['ok']}/{x['questions']} | "
              f"{x['recall_ms_median'] / 1000:.1f} s |")
    print(f"receipt: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
