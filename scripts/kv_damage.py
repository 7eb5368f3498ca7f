"""The damage of each KV cache type against f16, as `ikv plan` measures it, plus a control.

    python scripts/kv_damage.py        # writes receipts/kv_damage.json (about 3 minutes)

The control is f16 with flash attention forced on: quantized V caches need flash attention,
so part of their difference from the f16 reference could be flash attention's own rounding.
The same pairs are measured again at every position (stride 1), beside the every-fourth
position `ikv plan` reads, to show what the shortcut changes.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict

from ikv_local import receipt
from ikv_local.kvquality import STRIDE, calibration_text, measure
from ikv_local.model_file import resolve_model
from ikv_local.plan import PAIRS


def main() -> int:
    path = resolve_model(sys.argv[1] if len(sys.argv) > 1 else None)
    t = time.perf_counter()
    *rows, control = [asdict(d) for d in measure(path, PAIRS, control=True)]
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    every = [asdict(d) for d in measure(path, PAIRS, stride=1)]
    seconds_every = time.perf_counter() - t
    results = {"damage": rows, "control_f16_flash_attention": control, "seconds": round(seconds, 1),
               "stride": STRIDE, "damage_every_position": every,
               "seconds_every_position": round(seconds_every, 1),
               "note": f"mean KL (nats per position) of next-token distributions against f16, "
                       f"every {STRIDE}th position from 32 on of the calibration text (and every "
                       f"position, as ikv measured before, in damage_every_position)"}
    print(rows)
    out = receipt.write("kv_damage", results,
                        {"model_sha256": receipt.file_sha256(path), "model": path.name,
                         "calibration_sha256": hashlib.sha256(calibration_text().encode()).hexdigest()},
                        "python scripts/kv_damage.py " + " ".join(sys.argv[1:]))
    print(f"receipt: {out}; control (f16, flash attention on): {control}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
