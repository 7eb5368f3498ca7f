"""Time to open an Engine on a model no engine holds, beside one on the model already loaded.

    python scripts/engine_reuse.py [GGUF ...] [--runs 5] [-c 2048]

Per run and model: free idle models, open and close an Engine (the model is loaded: the
baseline), then open and close another (it reuses the loaded weights, as a session after
calibration, the TUI reopening a session, or a test does). Reports medians and their ratio.
Writes receipts/engine_reuse.json. Defaults: the demo model and SmolLM2 when installed.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

from ikv_local import receipt
from ikv_local.engine import Engine, EngineConfig, release_models
from ikv_local.model_file import packaged_models


def _open_close(path: str, n_ctx: int) -> float:
    t0 = time.perf_counter()
    Engine(path, EngineConfig(n_ctx=n_ctx, n_seq_max=3)).close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-c", "--ctx-size", type=int, default=2048)
    args = parser.parse_args()
    results: dict[str, object] = {}
    inputs: dict[str, str] = {}
    for path in args.models or [str(p) for p in packaged_models()]:
        first, again = [], []
        for _ in range(args.runs):
            release_models()
            first.append(_open_close(path, args.ctx_size))
            again.append(_open_close(path, args.ctx_size))
        name = Path(path).name
        inputs[name] = receipt.file_sha256(path)
        results[name] = {"first_engine_s": round(statistics.median(first), 3),
                         "second_engine_s": round(statistics.median(again), 3),
                         "ratio": round(statistics.median(first) / statistics.median(again), 1),
                         "runs": args.runs, "n_ctx": args.ctx_size}
        print(name, results[name])
    out = receipt.write("engine_reuse", results, inputs,
                        "python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"receipt: {out}")


if __name__ == "__main__":
    main()
