"""`ikv demo` and `ikv bench passkey` as a user runs them, in separate processes."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures


def test_demo_answers_side_by_side(ikv):
    run = ikv("demo", "--multiple", "3", "-c", "1024", "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["tokens"] > 2 * 1024 and got["window"] == 1024
    assert got["ikv"]["correct"], got["ikv"]
    assert any(got["key"] in s["text"] for s in got["ikv"]["recalled"])
    assert not got["sliding_window"]["correct"], got["sliding_window"]
    assert got["hot_kv_bytes"] > 0 and got["full_context_kv_bytes"] > 0


def test_bench_passkey_writes_a_receipt(ikv, tmp_path):
    run = ikv("bench", "passkey", "-c", "1024", "--multiples", "2", "--depths", "0.2",
              "--full-max", "0", "--out", str(tmp_path), "--json")
    assert run.returncode == 0, run.stderr
    receipt = json.loads((tmp_path / "passkey.json").read_text())
    assert receipt["benchmark"] == "passkey" and receipt["inputs"]["model_sha256"]
    (row,) = receipt["results"]["summary"]
    assert row["multiple"] == 2 and row["trials"] == 1
    assert row["full_context"] is None
    assert json.loads(run.stdout)["summary"] == receipt["results"]["summary"]
