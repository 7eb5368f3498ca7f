"""What writing a checkpoint's headers costs per turn: `metadata.plain` beside `dataclasses.asdict`.

    python scripts/header_cost.py [--tokens 512,8000,32000] [--runs 7]

A session save turns the window header and the session metadata into dicts (four calls a
turn); the header holds four entries per token of the window. For each window size, the
median of `runs` timings (each the mean of 20 calls) of asdict and of plain on a header of
that many tokens, and their ratio. Writes receipts/header_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from dataclasses import asdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from ikv_local import receipt  # noqa: E402
from ikv_local.metadata import WindowHeader, plain  # noqa: E402


def header(n: int) -> WindowHeader:
    recent = {k: list(range(n)) for k in ("tokens", "roles", "sources", "segments")}
    return WindowHeader({"n_ctx": n + 64}, [2], recent, 0, 0, None, 0)


def ms_per_call(fn, value: object, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = [timeit.timeit(lambda: fn(value), number=20) / 20 for _ in range(runs)]
    return round(statistics.median(times) * 1000, 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="512,8000,32000")
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    rows = []
    for n in (int(t) for t in a.tokens.split(",")):
        h = header(n)
        assert plain(h) == asdict(h)
        before, after = ms_per_call(asdict, h, a.runs), ms_per_call(plain, h, a.runs)
        rows.append({"window_tokens": n, "asdict_ms": before, "plain_ms": after,
                     "ratio": round(before / after, 1)})
        print(f"{n:>6} tokens: asdict {before} ms, plain {after} ms ({rows[-1]['ratio']}x)")
    print(receipt.write("header_cost", {"rows": rows}, {"tokens": a.tokens, "runs": str(a.runs)},
                        "python scripts/header_cost.py " + " ".join(sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
