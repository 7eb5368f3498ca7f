"""Pass-key benchmark: ikv vs the sliding window vs full context, one run side by side.

    python scripts/passkey.py                      # the README table (about 30 minutes on 2 cores)
    python scripts/passkey.py --multiples 4 --depths 0.5   # a quick look

Writes receipts/passkey.json (same as `ikv bench passkey`).
"""

from __future__ import annotations

import argparse
import sys

from ikv_local.passkey import run_and_record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--ctx-size", type=int, default=2048)
    ap.add_argument("--multiples", default="4,8,16,32")
    ap.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--full-max", type=int, default=16384,
                    help="run full context for documents up to this many tokens")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    run_and_record(
        [int(x) for x in a.multiples.split(",")], [float(x) for x in a.depths.split(",")],
        n_ctx=a.ctx_size, seeds=a.seeds, full_max_tokens=a.full_max, model=a.model,
        out_dir=a.out, command="python scripts/passkey.py " + " ".join(sys.argv[1:]),
        log=lambda line: print(line, flush=True),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
