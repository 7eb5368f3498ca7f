"""Every write of every session operation fails once, in turn, or the process dies there.

    python scripts/faults.py            # writes receipts/faults.json (about 20 minutes)
    python scripts/faults.py ingest     # one operation

For each operation (ingest into a new and an existing session, a chat turn, /undo, /retry,
`sessions fork --at-turn`, prune, rename,
reindex, repair of a sound session, repair of a session with its window lost and a turn
damaged) the write calls are counted first; then each call in turn gets each fault kind:
ENOSPC, EIO, SIGKILL before the write, SIGKILL half-way through it. After each, the session
must verify (`ikv sessions check`), hold every record and turn committed before the fault
byte for byte, and open read-only with the model; an interrupted repair must finish when run
again. Errors must be one line, with no temporary file left. The harness is tests/faults.py.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "tests")]

from faults import KINDS, sweep  # noqa: E402
from ikv_local import receipt  # noqa: E402
from ikv_local.model_file import resolve_model  # noqa: E402

OPS = ["ingest-new", "ingest", "chat-turn", "undo", "retry", "fork", "prune", "rename",
       "reindex", "repair", "repair-damaged"]


def main() -> int:
    names = sys.argv[1:] or OPS
    t0 = time.perf_counter()
    result, sites = sweep(names, KINDS, log=lambda line: print(line, flush=True))
    kinds = Counter(t.kind for t in result.trials)
    site_names = sorted({f"{t.op}: {t.site}" for t in result.trials})
    results = {
        "operations": sites,
        "write_calls": sum(sites.values()),
        "fault_kinds": list(KINDS),
        "trials": len(result.trials),
        "trials_per_kind": dict(kinds),
        "distinct_sites": site_names,
        "losses": [asdict(t) for t in result.losses],
        "loss_count": len(result.losses),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    model = resolve_model(None)
    out = receipt.write("faults", results, {"model_sha256": receipt.file_sha256(model),
                                            "model": model.name},
                        "python scripts/faults.py " + " ".join(sys.argv[1:]))
    print(f"{len(result.trials)} trials ({sum(sites.values())} write calls x {len(KINDS)} kinds), "
          f"{len(result.losses)} losses; receipt: {out}")
    return 1 if result.losses else 0


if __name__ == "__main__":
    raise SystemExit(main())
