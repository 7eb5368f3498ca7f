"""Receipts say whether the tree the benchmark ran from held changes git does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ikv_local.receipt import git_dirty


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "receipts").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "receipts" / "bench.json").write_text("{}\n")
    for cmd in (["init", "-q"], ["add", "."],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    return repo


def test_a_receipt_written_again_is_not_a_dirty_tree_but_changed_code_is(tmp_path):
    repo = _repo(tmp_path)
    receipt = repo / "receipts" / "bench.json"
    assert git_dirty(ignore=receipt, cwd=repo) is False
    receipt.write_text('{"docs": 1}\n')  # the script's own write after its first document
    assert git_dirty(ignore=receipt, cwd=repo) is False
    assert git_dirty(cwd=repo) is True
    (repo / "code.py").write_text("x = 2\n")
    assert git_dirty(ignore=receipt, cwd=repo) is True
    (repo / "notes.txt").write_text("untracked files do not count\n")
    (repo / "code.py").write_text("x = 1\n")
    assert git_dirty(ignore=receipt, cwd=repo) is False


def test_a_receipt_names_the_settings_that_change_its_figures(tmp_path, monkeypatch):
    import json

    from ikv_local.receipt import write

    monkeypatch.setenv("IKV_CALIBRATION_TOKENS", "512")
    monkeypatch.delenv("IKV_THREADS", raising=False)
    path = write("x", {}, {}, "python scripts/x.py", out_dir=tmp_path)
    assert json.loads(path.read_text())["settings"] == {"IKV_CALIBRATION_TOKENS": "512"}


def test_a_receipt_names_no_path_of_the_machine_that_ran_it(tmp_path):
    import json

    from ikv_local.receipt import portable_command, write

    cmd = "python scripts/recall_prose.py --times 4,16 --home /tmp/prose-final --out=/tmp/k8 -c 512"
    path = write("x", {}, {}, cmd, out_dir=tmp_path)
    assert json.loads(path.read_text())["command"] == (
        "python scripts/recall_prose.py --times 4,16 --home prose-final --out=k8 -c 512")
    kept = "python scripts/long_chat.py --system 'A conversation between a user and an assistant.'"
    assert portable_command(kept) == kept
