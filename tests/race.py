"""Two processes start `ikv ingest` on one session at nearly the same moment.

One may write; the other must be refused in one line ("in use") or run after the first, and
the session must end sound, holding exactly the documents of the runs that succeeded. Used
by tests/test_session.py (a few tries) and scripts/race.py (50 tries, a receipt).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from forked import Child, run


@dataclass
class Try:
    new: bool
    delay: float
    codes: tuple[int, int]
    ok: bool
    why: str = ""


def _env(home: Path) -> dict[str, str]:
    return {"IKV_HOME": str(home), "IKV_FAULT": ""}


def one(home: Path, docs: tuple[Path, Path], new: bool, delay: float) -> Try:
    """Start ingest of docs[0], wait `delay`, start ingest of docs[1]; then check the session."""
    from ikv_local.paths import using_home
    from ikv_local.repair import check

    name = "race"
    folder = home / "sessions" / name
    if new and folder.exists():
        shutil.rmtree(folder)
    if not new and not folder.exists():
        assert run(("ingest", str(docs[0]), "--session", name, "-c", "512"), _env(home), "")[0] == 0
    before = _tokens(home, name) if not new else 0
    args = [("ingest", str(d), "--session", name, "-c", "512", "--json") for d in docs]
    first = Child(args[0], _env(home))
    time.sleep(delay)
    second = Child(args[1], _env(home))
    outs = [p.communicate(timeout=300) for p in (first, second)]
    codes = (first.returncode, second.returncode)
    t = Try(new, round(delay, 3), codes, True)
    read = 0
    for code, (out, err) in zip(codes, outs):
        if code == 0:
            read += json.loads(out)["tokens"]
        elif code != 7 or "in use" not in err or "Traceback" in err:
            t.ok, t.why = False, f"rc {code}: {err.strip()[-200:]}"
            return t
    if 0 not in codes:
        t.ok, t.why = False, "neither process wrote"
        return t
    with using_home(home):
        report = check(name)
    if not report.sound:
        t.ok, t.why = False, "; ".join(f.detail for f in report.findings if not f.ok)
    elif _tokens(home, name) != before + read:
        t.ok, t.why = False, f"holds {_tokens(home, name)} tokens, runs read {before} + {read}"
    return t


def _tokens(home: Path, name: str) -> int:
    code, out, err = run(("sessions", "show", name, "--json"), _env(home), "")
    assert code == 0, err
    return int(json.loads(out)["tokens"])


def loop(home: Path, docs: tuple[Path, Path], tries: int, seed: int = 0,
         log=lambda _: None) -> list[Try]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    out = []
    for i in range(tries):
        t = one(home, docs, new=i % 2 == 0, delay=rng.uniform(0.0, 1.5))
        log(f"try {i}: {'new' if t.new else 'existing'} session, delay {t.delay:.2f} s, "
            f"exit codes {t.codes}: {'ok' if t.ok else 'FAIL ' + t.why}")
        out.append(t)
    return out
