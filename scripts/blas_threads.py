"""Ingest with numpy's BLAS held to one thread (what ikv does) beside BLAS left at its default.

    python scripts/blas_threads.py [--runs 5] [--multiple 4] [-c 2048]

Each run ingests the same document into a fresh session in a child process, once with
`engine.blas_on_one_thread` as shipped and once with it made a no-op (OpenBLAS then starts
one thread per core), alternating which goes first. Reports medians of wall seconds and of
the child's user CPU seconds, and their ratios. Writes receipts/blas_threads.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ikv_local import receipt
from ikv_local.model_file import resolve_model
from ikv_local.passkey import document

CHILD = """
import json, sys, time
from pathlib import Path
import ikv_local.engine as engine
if sys.argv[1] == "off":
    engine.blas_on_one_thread = lambda: None
from ikv_local.ingest import ingest
from ikv_local.session import OpenOptions, Session
with Session(sys.argv[2], OpenOptions(create=True, n_ctx=int(sys.argv[4]))) as s:
    t0 = time.perf_counter()
    got = ingest(s, [Path(sys.argv[3])])
    print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": got.tokens}))
"""


def _run(mode: str, name: str, doc: Path, n_ctx: int, env: dict[str, str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    out = subprocess.run([sys.executable, "-c", CHILD, mode, name, str(doc), str(n_ctx)],
                         env=env, capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    got["user_cpu_s"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--ctx-size", type=int, default=2048)
    ap.add_argument("--multiple", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    model = resolve_model(None)
    text, _ = document(a.multiple * a.ctx_size, 0.5, 3)
    rows: dict[str, list[dict[str, float]]] = {"one_thread": [], "default": []}
    with tempfile.TemporaryDirectory(prefix="ikv-blas-") as home:
        env = {k: v for k, v in os.environ.items()
               if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        env["IKV_HOME"] = home
        doc = Path(home) / "doc.txt"
        doc.write_text(text)
        for run in range(a.runs):
            order = ("on", "off") if run % 2 == 0 else ("off", "on")
            for mode in order:
                got = _run(mode, f"{mode}{run}", doc, a.ctx_size, env)
                rows["one_thread" if mode == "on" else "default"].append(got)
                print(mode, {k: round(v, 2) for k, v in got.items()}, flush=True)
    med = {k: {m: round(statistics.median(r[m] for r in v), 2) for m in ("seconds", "user_cpu_s")}
           for k, v in rows.items()}
    results = {
        "n_ctx": a.ctx_size, "document_tokens": rows["one_thread"][0]["tokens"], "runs": a.runs,
        "cores": os.cpu_count(), "medians": med, "all": rows,
        "wall_default_over_one_thread": round(med["default"]["seconds"] / med["one_thread"]["seconds"], 3),
        "cpu_default_over_one_thread": round(med["default"]["user_cpu_s"] / med["one_thread"]["user_cpu_s"], 3),
    }
    print(json.dumps({k: v for k, v in results.items() if k != "all"}))
    out = receipt.write("blas_threads", results,
                        {"model_sha256": receipt.file_sha256(model),
                         "document_sha256": hashlib.sha256(text.encode()).hexdigest()},
                        "python " + " ".join(shlex.quote(x) for x in sys.argv))
    print(f"receipt: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
