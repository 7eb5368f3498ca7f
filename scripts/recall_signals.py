"""Does a lexical signal (the records' token ids) help the key sketches find the right spans?

    python scripts/recall_signals.py      # writes receipts/recall_signals.json

Haystacks with four planted facts are ingested with a small window (so the facts are
archived); for each fact's question and its paraphrase, the slot is chosen with several
weights of the lexical signal. Recall = the fact's answer is inside the chosen spans.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from ikv_local import receipt
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.ingest import ingest
from ikv_local.model_file import resolve_model
from ikv_local.recall import RecallSettings, find_spans, query_sketches
from ikv_local.session import OpenOptions, Session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--ctx-size", type=int, default=1024)
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--docs", type=int, default=3)
    ap.add_argument("--weights", default="0,0.25,0.5,1")
    ap.add_argument("--budget", type=int, default=224, help="slot tokens for spans")
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    weights = [float(w) for w in a.weights.split(",")]
    hits = {w: 0 for w in weights}
    total = 0
    per_question = []
    hashes = []
    with tempfile.TemporaryDirectory(prefix="ikv-signals-") as home:
        os.environ["IKV_HOME"] = home
        for d in range(a.docs):
            needles = [pass_key_needle(100 + d), *FACT_NEEDLES]
            hay = build(a.sentences, needles, [0.1, 0.3, 0.5, 0.7], seed=100 + d)
            hashes.append(hashlib.sha256(hay.text.encode()).hexdigest())
            path = Path(home) / f"doc{d}.txt"
            path.write_text(hay.text)
            with Session(f"d{d}", OpenOptions(create=True, n_ctx=a.ctx_size)) as s:
                ingest(s, [path])
                eng = s.engine
                assert eng is not None
                for needle in needles:
                    for q in (needle.question, needle.paraphrase):
                        qt = eng.tokenize(q)
                        queries = query_sketches(eng, s.spec, s.window.layout.sink, qt)
                        row = {"doc": d, "question": q}
                        for w in weights:
                            spans = find_spans(s.archive, s.index, queries, a.budget,
                                               RecallSettings(lexical=w), qt)
                            ok = any(needle.answer in eng.detokenize(sp.tokens) for sp in spans)
                            hits[w] += ok
                            row[f"lexical_{w}"] = ok
                        total += 1
                        per_question.append(row)
                        print(row, flush=True)
    recall = {str(w): round(hits[w] / total, 3) for w in weights}
    print("recall by lexical weight:", recall)
    receipt.write("recall_signals", {"questions": total, "recall": recall, "budget": a.budget,
                                     "n_ctx": a.ctx_size, "per_question": per_question},
                  {"model_sha256": receipt.file_sha256(resolve_model(None)),
                   "documents_sha256": hashlib.sha256("".join(hashes).encode()).hexdigest()},
                  "python scripts/recall_signals.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
