"""Time to file 1,000 cells of the demo model's KV cache, beside the time to compute them.

    python scripts/readout_bench.py [GGUF] [--runs 5] [--block 512]

Per run: prefill about 1,900 tokens of filler (plain decode, the baseline), then file cells
[1, 1001) into a fresh archive in blocks of --block: read out (seq_cp + state copy + parse),
de-rope, sketch, encode, append. Reports medians and the readout's share of prefill time.
Writes receipts/readout_bench.json.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time


from ikv_local import receipt

from ikv_local.archive import Archive
from ikv_local.calibrate import sketch_spec
from ikv_local.engine import Engine, EngineConfig
from ikv_local.filing import Origin, file_cells
from ikv_local.haystack import filler_sentences
from ikv_local.model_file import resolve_model
from ikv_local.readout import read_cells
from ikv_local.record import Role

CELLS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--block", type=int, default=512)
    args = parser.parse_args()
    path = resolve_model(args.model)
    prefill, readout, filing = [], [], []
    with Engine(path, EngineConfig(n_ctx=2048)) as eng:
        spec = sketch_spec(eng)
        tokens = eng.tokenize(" ".join(filler_sentences(150, seed=5)), add_bos=True)[:1900]
        for _ in range(args.runs):
            eng.clear()
            t = time.perf_counter()
            eng.decode(tokens, 0)
            prefill.append((time.perf_counter() - t) / len(tokens) * CELLS)
            t = time.perf_counter()
            for a in range(1, 1 + CELLS, args.block):
                read_cells(eng, a, min(a + args.block, 1 + CELLS))
            readout.append(time.perf_counter() - t)
            with tempfile.TemporaryDirectory() as tmp:
                archive = Archive.create(tmp, {"model_fingerprint": {}, "sketch": spec.to_dict()})
                t = time.perf_counter()
                for a in range(1, 1 + CELLS, args.block):
                    b = min(a + args.block, 1 + CELLS)
                    file_cells(eng, archive, spec, a, tokens[a:b], a, Origin(Role.DOCUMENT, 0, 0))
                filing.append(time.perf_counter() - t)
    results = {
        "cells": CELLS,
        "block": args.block,
        "runs": args.runs,
        "prefill_s_per_1000_tokens": statistics.median(prefill),
        "readout_s_per_1000_cells": statistics.median(readout),
        "filing_s_per_1000_cells": statistics.median(filing),
        "filing_share_of_prefill": statistics.median(filing) / statistics.median(prefill),
        "sketch_units": spec.units,
    }
    for k, v in results.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    out = receipt.write("readout_bench", results, {"model_sha256": receipt.file_sha256(path)},
                        "python " + shlex.join(["scripts/readout_bench.py", *sys.argv[1:]]))
    print(f"receipt: {out}")


if __name__ == "__main__":
    main()
