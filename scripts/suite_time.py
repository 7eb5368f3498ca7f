"""How long the whole test suite takes here, from an empty cache, as CI runs it.

    python scripts/suite_time.py [RUNS]    # writes receipts/suite_time.json (about 7 minutes a run)

Runs `python -m pytest -q` (the README's test command) RUNS times (default 1) with fresh
IKV_CACHE and pytest temporary folders, so the demo model is assembled and every model
measured again each time; records the wall time of each run, the median, and the count of
tests passed. The installed package is what runs: install the tree first.

Each run's CPU seconds (user and system, of the suite and every process it started) are kept
beside its wall time: the suite keeps both cores busy, so the wall time is about half the CPU
time, and a slower machine shows as more CPU seconds for the same tests. So that a slower
machine can be told from a slower suite, the receipt also keeps how fast this machine reads a
prompt: the demo model on one thread, as each test worker runs it, before the runs.
"""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE)]

from ikv_local import receipt  # noqa: E402


def one_run() -> tuple[float, float, float, str]:
    """Wall, user CPU and system CPU seconds, and pytest's summary line."""
    with tempfile.TemporaryDirectory(prefix="ikv-suite-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--basetemp", str(Path(tmp) / "t")], cwd=HERE,
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0:
        raise SystemExit(f"suite_time: the suite failed: {summary or done.stderr[-300:]}")
    return seconds, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, summary


PROBE = """
import os, time
os.environ["IKV_THREADS"] = "1"
from ikv_local.engine import Engine, EngineConfig
from ikv_local.haystack import build
from ikv_local.model_file import demo_model_path
with Engine(demo_model_path(), EngineConfig(n_ctx=2048)) as e:
    tokens = e.tokenize(build(120, [], [], seed=3).text)[:1600]
    e.decode(tokens[:16], 0, logits_last=False)  # the first decode sets up buffers
    t0 = time.perf_counter()
    e.decode(tokens[16:], 16, logits_last=False)
    print((time.perf_counter() - t0) / (len(tokens) - 16) * 1000)
"""


def prompt_ms_per_token(runs: int = 3) -> float:
    """The median of `runs` reads of 1,584 prompt tokens, in ms per token."""
    got = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              check=True)
        got.append(float(done.stdout.split()[-1]))
    return round(statistics.median(got), 2)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    probe = prompt_ms_per_token()
    print(f"this machine reads a prompt at {probe} ms per token on one thread", flush=True)
    results = []
    for i in range(runs):
        seconds, user, system, summary = one_run()
        print(f"run {i + 1}: {seconds:.0f} s ({user:.0f} s user, {system:.0f} s system CPU), "
              f"{summary}", flush=True)
        results.append({"seconds": round(seconds, 1), "user_cpu_seconds": round(user, 1),
                        "system_cpu_seconds": round(system, 1), "summary": summary})
    passed = re.search(r"(\d+) passed", results[-1]["summary"])
    path = receipt.write("suite_time", {
        "runs": results,
        "median_seconds": round(statistics.median(r["seconds"] for r in results), 1),
        "median_user_cpu_seconds": round(statistics.median(r["user_cpu_seconds"] for r in results), 1),
        "passed": int(passed.group(1)) if passed else None,
        "prompt_ms_per_token_one_thread": probe,
    }, {"test_command": "python -m pytest -q"}, "python scripts/suite_time.py " + str(runs))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
