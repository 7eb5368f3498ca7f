"""Rank every (layer, KV head) of a model by where planted needles land; check the sketch.

    python scripts/needle_rank.py [GGUF] [--sentences 400] [-c 2048]

Plants a pass key and three facts in varied filler, asks for each with its own words and with
a paraphrase, and for every unit reports the share of haystack tokens that score above the
best needle token (0 = the needle is first). Then the 512-bit sketch the model would use
(units chosen by `ikv_local.calibrate` on its own calibration text, not this one) is scored
the same way. Writes receipts/needle_rank.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict


from ikv_local import receipt

from ikv_local.calibrate import measure, sketch_spec
from ikv_local.engine import Engine, EngineConfig
from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle
from ikv_local.model_file import resolve_model
from ikv_local.sketch import encode, hamming, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("-c", "--ctx-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    path = resolve_model(args.model)
    t0 = time.perf_counter()
    with Engine(path, EngineConfig(n_ctx=args.ctx_size)) as eng:
        spec = sketch_spec(eng)
        hay = build(args.sentences, [pass_key_needle(args.seed), *FACT_NEEDLES],
                    [0.15, 0.4, 0.65, 0.9], seed=args.seed)
        m = measure(eng, hay)
    doc = encode(vectors([m.keys[layer][1:, h, :] for layer, h in spec.units], spec), spec)
    sketch_rows = []
    for (i, question), qk in zip(m.questions, m.question_keys):
        q = encode(vectors([qk[layer][:, h, :] for layer, h in spec.units], spec), spec)
        dist = hamming(doc, q).min(axis=1)
        best = dist[m.needle_tokens[i] - 1].min()
        sketch_rows.append({"question": question, "share_above": float((dist < best).mean()),
                            "rank": int((dist < best).sum()) + 1})
    print(f"{m.n_tokens:,} haystack tokens, {len(m.questions)} questions")
    print("unit (layer, head)   mean share above   worst")
    for r in m.ranks:
        mark = "  <- sketch" if (r.layer, r.head) in spec.units else ""
        print(f"  ({r.layer:2d}, {r.head})          {r.mean:8.4f}        {r.worst:6.4f}{mark}")
    print(f"sketch {spec.units}: ranks of the best needle token per question:",
          [s["rank"] for s in sketch_rows])
    results = {
        "n_tokens": m.n_tokens,
        "questions": [q for _, q in m.questions],
        "units": [asdict(r) | {"mean": r.mean, "worst": r.worst} for r in m.ranks],
        "sketch_units": spec.units,
        "sketch_chosen_by": spec.chosen_by,
        "sketch": sketch_rows,
        "sketch_worst_share_above": max(s["share_above"] for s in sketch_rows),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = receipt.write(
        "needle_rank", results,
        {"model_sha256": receipt.file_sha256(path), "haystack_seed": str(args.seed),
         "sentences": str(args.sentences)},
        "python " + shlex.join(["scripts/needle_rank.py", *sys.argv[1:]]),
    )
    print(f"receipt: {out}")


if __name__ == "__main__":
    main()
