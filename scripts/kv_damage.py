"""The damage of each KV cache type against f16, as `ikv plan` measures it, plus a control.

    python scripts/kv_damage.py        # writes receipts/kv_damage.json (about 2 minutes)

The control is f16 with flash attention forced on: quantized V caches need flash attention,
so part of their difference from the f16 reference could be flash attention's own rounding.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict

from ikv_local import receipt
from ikv_local.kvquality import calibration_text, measure
from ikv_local.model_file import resolve_model
from ikv_local.plan import PAIRS


def main() -> int:
    path = resolve_model(sys.argv[1] if len(sys.argv) > 1 else None)
    t = time.perf_counter()
    *rows, control = [asdict(d) for d in measure(path, PAIRS, control=True)]
    seconds = time.perf_counter() - t
    results = {"damage": rows, "control_f16_flash_attention": control, "seconds": round(seconds, 1),
               "note": "mean KL (nats per position) of next-token distributions against f16, "
                       "positions 32 onwards of the calibration text"}
    print(rows)
    out = receipt.write("kv_damage", results,
                        {"model_sha256": receipt.file_sha256(path), "model": path.name,
                         "calibration_sha256": hashlib.sha256(calibration_text().encode()).hexdigest()},
                        "python scripts/kv_damage.py " + " ".join(sys.argv[1:]))
    print(f"receipt: {out}; control (f16, flash attention on): {control}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
