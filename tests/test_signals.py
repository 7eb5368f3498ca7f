"""Ctrl-C and SIGTERM during `ikv ingest`, as a user sends them: one line, exit 130 / 143,
never swallowed (a SIGINT that landed in llama.cpp's log callback once was), and the session
opens afterwards holding exactly what the message said."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from pathlib import Path

import pytest
from forked import Child

from ikv_local.haystack import build, pass_key_needle

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures

CHECKPOINT = 0.5  # seconds between checkpoints; each stop lands 0.1 to 1.5 periods after the first


def _fast_checkpoints() -> None:
    """Checkpoints every half second, so the stops land before, after and during them."""
    from ikv_local import ingest

    ingest.CHECKPOINT_SECONDS = CHECKPOINT


@pytest.fixture
def long_doc(tmp_path: Path) -> Path:
    """About 10,000 tokens: half a minute of reading, far longer than any try waits."""
    path = tmp_path / "long.txt"
    path.write_text(build(600, [pass_key_needle(21)], [0.1], seed=21).text)
    return path


def _stop_an_ingest(ikv_home: Path, path: Path, sig: signal.Signals,
                    delay: float) -> tuple[int, str]:
    """Start an ingest, send `sig` `delay` checkpoint periods after the session is open;
    (rc, stderr)."""
    meta = ikv_home / "sessions" / "s" / "session.json"
    start = time.time_ns()
    proc = Child(("ingest", str(path), "--session", "s", "-c", "1024"), prepare=_fast_checkpoints)
    deadline = time.time() + 60
    try:
        # open: a new session is saved when made, an old one at its first checkpoint
        while time.time() < deadline and not (meta.exists() and meta.stat().st_mtime_ns > start):
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        time.sleep(delay * CHECKPOINT)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)  # a swallowed signal reads on for 20 s or more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def _check_stop(ikv, rc: int, err: str, code: int, what: str) -> None:
    assert rc == code, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    m = re.fullmatch(rf"ikv: {what}; ([\d,]+) tokens kept up to the last checkpoint", last)
    assert m, err
    shown = json.loads(ikv("sessions", "show", "s", "--json").stdout)
    assert shown["tokens"] == int(m.group(1).replace(",", ""))


def test_ctrl_c_during_ingest_always_stops_it_cleanly(ikv, ikv_home, long_doc):
    rng = random.Random(7)
    codes = []
    for _ in range(7):
        rc, err = _stop_an_ingest(ikv_home, long_doc, signal.SIGINT, rng.uniform(0.1, 1.5))
        _check_stop(ikv, rc, err, 130, "stopped")
        codes.append(rc)
    assert codes == [130] * 7  # every try was stopped by the signal, none ran to the end


def test_sigterm_during_ingest_stops_it_cleanly_and_the_session_answers(ikv, ikv_home, long_doc):
    rng = random.Random(143)
    for _ in range(3):
        rc, err = _stop_an_ingest(ikv_home, long_doc, signal.SIGTERM, rng.uniform(0.1, 1.5))
        _check_stop(ikv, rc, err, 143, "stopped by SIGTERM")
    run = ikv("ask", "What is the pass key?", "--session", "s", "-n", "4", "--json")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert json.loads(run.stdout)["tokens"] > 0
