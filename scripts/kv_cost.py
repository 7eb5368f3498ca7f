"""KV cache bytes per token by cache type, computed and as llama.cpp's state API reports them.

    python scripts/kv_cost.py [GGUF] [--tokens 64]

Writes receipts/kv_cost.json. The computed figure is what `ikv info` prints; the measured one
is the growth of llama_state_seq_get_size over a known number of decoded tokens, less the
12 bytes of cell metadata per cache.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time


from ikv_local import receipt

from ikv_local.engine import Engine, EngineConfig
from ikv_local.info import INFO_CACHE_TYPES, measure_state_bytes_per_token
from ikv_local.kvcost import bytes_per_token
from ikv_local.model_file import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    path = resolve_model(args.model)
    with Engine(path, EngineConfig(n_ctx=256)) as eng:
        facts = eng.facts
    rows = []
    for ct in INFO_CACHE_TYPES:
        t0 = time.perf_counter()
        measured = measure_state_bytes_per_token(path, ct, n_tokens=args.tokens)
        rows.append({
            "cache_type": ct,
            "computed_bytes_per_token": bytes_per_token(facts.layers, ct, ct),
            "llama_cpp_state_bytes_per_token": measured,
            "seconds": round(time.perf_counter() - t0, 3),
        })
        print(f"{ct:6s} computed {rows[-1]['computed_bytes_per_token']:>7,}  "
              f"llama.cpp {measured:>9,.1f}")
    results = {"model": facts.name, "arch": facts.arch, "tokens": args.tokens, "rows": rows,
               "all_equal": all(r["computed_bytes_per_token"] == r["llama_cpp_state_bytes_per_token"]
                                for r in rows)}
    out = receipt.write("kv_cost", results, {"model_sha256": receipt.file_sha256(path)},
                        "python " + shlex.join(["scripts/kv_cost.py", *sys.argv[1:]]))
    print(f"receipt: {out}")


if __name__ == "__main__":
    main()
