"""What recall costs as the archive grows: search and rerank at 100k and 1M archived tokens.

    python scripts/recall_cost.py            # writes receipts/recall_cost.json

The archive is synthetic, as in scripts/archive_bench.py (Zipf "words" whose sketches are a
centre with 12% of the bits flipped; here the token id is the word, and a sentence starts
every 8-30 tokens). A question is 12 tokens: ten common words and two rare ones. Timed is
`find_spans` with the default settings and with each signal alone: the index search, the
candidates grown to sentences, their scoring and the selection. Not timed: decoding the
question beside the sink and the slot (the model's share, the same at any archive size).
The first question on a freshly opened archive also counts its tokens once; it is reported
apart ("first_ms").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive_bench import NOISE, synthetic

from ikv_local import receipt
from ikv_local.archive import Archive
from ikv_local.index import SketchIndex
from ikv_local.recall import RecallSettings, find_spans
from ikv_local.record import Flag, encode

BATCH = 512
QUESTION = 12


def build(folder: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    sketches, words, centres = synthetic(n, seed)
    rng = np.random.default_rng(seed + 2)
    starts = np.zeros(n, bool)
    cuts = np.cumsum(rng.integers(8, 31, n // 8 + 1))
    starts[cuts[cuts < n]] = True
    flags = np.where(starts, int(Flag.SENTENCE_START), 0)
    archive = Archive.create(folder, {"model_fingerprint": {"arch": "synthetic"}, "sketch": {}})
    for s in range(0, n, BATCH):
        e = min(n, s + BATCH)
        archive.append(encode(position=np.arange(s, e), time_ms=1_700_000_000_000,
                              token=words[s:e], segment=0, source=0, role=0,
                              flags=flags[s:e], sketch=sketches[s:e]))
    SketchIndex(archive).refresh()
    return words, centres


def questions(words: np.ndarray, centres: np.ndarray, count: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed + 3)
    counts = np.bincount(words)
    common = np.argsort(-counts)[:200]
    rare = np.flatnonzero((counts > 0) & (counts <= 8))
    out = []
    for _ in range(count):
        q = np.concatenate([rng.choice(common, QUESTION - 2), rng.choice(rare, 2)])
        sk = centres[q] ^ np.packbits(rng.random((QUESTION, 512)) < NOISE, axis=1)
        out.append((sk, [int(t) for t in q]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--questions", type=int, default=30)
    ap.add_argument("--budget", type=int, default=224, help="slot tokens for spans")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    default = RecallSettings()
    variants = {"default": default,
                "keys_only": replace(default, lexical=0.0, rarity=0.0, rare_hits=0),
                "before": replace(default, lexical=0.25, rarity=0.0, rare_hits=0),
                "rarity_only": replace(default, lexical=0.0, rare_hits=0, rarity=1.0),
                "rare_hits_only": replace(default, lexical=0.0, rarity=0.0, rare_hits=8)}
    results: dict[str, object] = {}
    for n in (int(x) for x in a.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="ikv-recall-cost-") as tmp:
            t0 = time.perf_counter()
            words, centres = build(tmp, n, a.seed)
            built = time.perf_counter() - t0
            archive = Archive(tmp, writable=False)
            index = SketchIndex(archive)
            qs = questions(words, centres, a.questions, a.seed)
            row: dict[str, object] = {"build_s": round(built, 1)}
            for name, settings in variants.items():
                archive = Archive(tmp, writable=False)  # fresh: the first question counts tokens
                index = SketchIndex(archive)
                ms = []
                for sk, toks in qs:
                    t = time.perf_counter()
                    find_spans(archive, index, sk, a.budget, settings, toks)
                    ms.append((time.perf_counter() - t) * 1000)
                warm = sorted(ms[1:])
                row[name] = {"first_ms": round(ms[0], 1),
                             "median_ms": round(warm[len(warm) // 2], 1),
                             "p95_ms": round(warm[int(0.95 * (len(warm) - 1))], 1)}
            results[str(n)] = row
            print(n, row, flush=True)
    receipt.write("recall_cost", {"records": results, "questions": a.questions,
                                  "question_tokens": QUESTION, "budget": a.budget,
                                  "settings": {k: asdict(v) for k, v in variants.items()}},
                  {"seed": str(a.seed)}, "python scripts/recall_cost.py " + " ".join(sys.argv[1:]),
                  out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
