"""How long the whole test suite takes here, from an empty cache, as CI runs it.

    python scripts/suite_time.py [RUNS]    # writes receipts/suite_time.json (about 7 minutes a run)

Runs `python -m pytest -q` (the README's test command) RUNS times (default 1) with fresh
IKV_CACHE and pytest temporary folders, so the demo model is assembled and every model
measured again each time; records the wall time of each run, the median, and the count of
tests passed. The installed package is what runs: install the tree first.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE)]

from ikv_local import receipt


def one_run() -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="ikv-suite-") as tmp:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--basetemp", str(Path(tmp) / "t")], cwd=HERE,
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0:
        raise SystemExit(f"suite_time: the suite failed: {summary or done.stderr[-300:]}")
    return seconds, summary


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    results = []
    for i in range(runs):
        seconds, summary = one_run()
        print(f"run {i + 1}: {seconds:.0f} s, {summary}", flush=True)
        results.append({"seconds": round(seconds, 1), "summary": summary})
    passed = re.search(r"(\d+) passed", results[-1]["summary"])
    path = receipt.write("suite_time", {
        "runs": results,
        "median_seconds": round(statistics.median(r["seconds"] for r in results), 1),
        "passed": int(passed.group(1)) if passed else None,
    }, {"test_command": "python -m pytest -q"}, "python scripts/suite_time.py " + str(runs))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
