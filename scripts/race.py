"""Two `ikv ingest` processes on one session, 50 times, with random delays between their starts.

    python scripts/race.py [TRIES]     # writes receipts/race.json (about 5 minutes)

Even tries race on a new session (the first one's folder is half made when the second
starts), odd tries on an existing one. Each try passes when one process writes and the other
is refused in one line (or runs after it), and the session ends sound holding exactly the
tokens the successful runs read. The harness is tests/race.py.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "tests")]

from race import loop  # noqa: E402
from ikv_local import receipt  # noqa: E402
from ikv_local.haystack import FACT_NEEDLES, build  # noqa: E402


def main() -> int:
    tries = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ikv-race-") as tmp:
        root = Path(tmp)
        small, fact = root / "small.txt", root / "fact.txt"
        small.write_text(build(60, [], [], seed=2).text)
        fact.write_text(FACT_NEEDLES[1].fact + "\n")
        results = loop(root / "home", (small, fact), tries,
                       log=lambda line: print(line, flush=True))
    failures = [asdict(t) for t in results if not t.ok]
    outcome = Counter("both wrote, one after the other" if t.codes == (0, 0) else
                      "one wrote, one refused" for t in results if t.ok)
    out = receipt.write("race", {"tries": tries, "failures": failures,
                                 "failure_count": len(failures), "outcomes": dict(outcome),
                                 "seconds": round(time.perf_counter() - t0, 1)},
                        {"delays": "uniform 0-1.5 s, seed 0"},
                        "python scripts/race.py " + " ".join(sys.argv[1:]))
    print(f"{tries} tries, {len(failures)} failures; receipt: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
