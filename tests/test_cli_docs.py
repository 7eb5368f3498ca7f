"""`ikv ingest` and `ikv ask` as a user runs them: separate processes, clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, made_once_per_run, run_ikv

from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures


def first_text() -> str:
    """About 2,200 tokens: a pass key early (it will be archived), a fact at the very end."""
    return build(140, [pass_key_needle(11)], [0.05], seed=11).text + " " + FACT_NEEDLES[1].fact + "\n"


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "first.txt"
    path.write_text(first_text())
    return path, pass_key_needle(11), FACT_NEEDLES[1]


@pytest.fixture(scope="session")
def first_ingested(demo_path, tmp_path_factory) -> tuple[Path, dict]:
    """`ikv ingest first.txt --session s1 -c 1024 --json` in a process of its own, once per run
    (its home and what it printed); the document is deleted afterwards, so nothing that reads
    the session can need it. Tests work on copies."""

    def make(root: Path) -> None:
        path = root / "first.txt"
        path.write_text(first_text())
        run = run_ikv("ingest", str(path), "--session", "s1", "-c", "1024", "--json",
                      env={"IKV_HOME": str(root / "home")}, child=True)
        assert run.returncode == 0, run.stderr
        (root / "ingest.json").write_text(run.stdout)
        path.unlink()

    root = made_once_per_run(tmp_path_factory, "first-ingested", make)
    return root / "home", json.loads((root / "ingest.json").read_text())


def test_ingest_then_ask_in_other_processes(ikv, first_ingested, ikv_home):
    home, got = first_ingested
    shutil.copytree(home / "sessions", ikv_home / "sessions")
    key, late = pass_key_needle(11), FACT_NEEDLES[1]
    assert got["session"] == "s1" and got["tokens"] > 2000
    assert got["archived_tokens"] + got["window_tokens"] - 1 == got["tokens"]
    assert got["archive_bytes"] >= 104 * got["archived_tokens"]
    # (the document is gone: ask must not need it, the window state is restored)
    # the late fact sits in the restored window: answered with nothing recalled
    run = ikv("ask", late.question, "--session", "s1", "--no-recall", "--json", "-n", "16",
              child=True)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert late.answer in answer["answer"].lower(), answer
    assert answer["recalled"] == [] and answer["archived_tokens"] == got["archived_tokens"]
    # the early key left the window: recall finds it, and says where it came from
    run = ikv("ask", "What is the pass key?", "--session", "s1", "--json", "-n", "24")
    answer = json.loads(run.stdout)
    assert key.answer in answer["answer"], answer
    span = next(s for s in answer["recalled"] if key.answer in s["text"])
    assert span["source"].endswith("first.txt") and 0 <= span["start"] < span["end"]
    # the plain command streams the answer and lists recalled spans on stderr
    run = ikv("ask", "What is the pass key?", "--session", "s1", "-n", "24")
    assert run.returncode == 0 and key.answer in run.stdout
    assert "first.txt" in run.stderr and "recalled" in run.stderr


def test_bad_input_is_refused_and_nothing_is_stored(ikv, tmp_path, ikv_home, doc):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_error(ikv("ingest", str(empty), "--session", "e"), 8, "empty")
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    assert_one_line_error(ikv("ingest", str(binary), "--session", "e"), 8, "binary")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café crème".encode("latin-1"))
    assert_one_line_error(ikv("ingest", str(latin), "--session", "e"), 8, "UTF-8")
    assert_one_line_error(ikv("ingest", str(tmp_path / "nope.txt"), "--session", "e"), 8, "no such file")
    assert not (ikv_home / "sessions" / "e").exists()
    # a good file and a bad one: refused before the good one is read
    path, _, _ = doc
    assert_one_line_error(ikv("ingest", str(path), str(empty), "--session", "e"), 8, "empty")
    assert not (ikv_home / "sessions" / "e").exists()


def test_session_errors(ikv, doc, folder, tmp_path, demo_path):
    assert_one_line_error(ikv("ask", "hi", "--session", "missing"), 7, "no session named 'missing'")
    assert_one_line_error(ikv("ask", "hi", "--session", "../etc"), 7, "plain names")
    path, _, _ = doc
    bound = folder.name  # a session made with the demo model
    other = tmp_path / "other.gguf"
    shutil.copy(demo_path, other)
    with open(other, "r+b") as f:  # same architecture, different weights
        f.seek(-4096, 2)
        byte = f.read(1)
        f.seek(-4096, 2)
        f.write(bytes([byte[0] ^ 0x01]))
    run = ikv("ask", "hi", "--session", bound, "--model", str(other))
    assert_one_line_error(run, 7, "another model")
    run = ikv("ingest", str(path), "--session", bound, "--model", str(other))
    assert_one_line_error(run, 7, "another model")


def test_kill_9_during_ingest_leaves_a_usable_session(ikv, tmp_path, ikv_home, ikv_cache):
    """The checkpoint before the kill is intact; records filed after it are cut when the
    session is next opened for writing, and the same file can be ingested again."""
    import os
    import signal
    import time

    from forked import Child

    path = tmp_path / "long.txt"
    path.write_text(build(130, [pass_key_needle(21)], [0.1], seed=21).text)  # ≈2k tokens: ~800 after the kill
    proc = Child(("ingest", str(path), "--session", "k", "-c", "1024"))
    records = ikv_home / "sessions" / "k" / "archive" / "records.ikv"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or records.stat().st_size < 4096 + 104 * 500):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert records.stat().st_size > 4096 + 104 * 500  # it was killed mid-ingest
    run = ikv("ask", "What is the pass key?", "--session", "k", "--json", "-n", "8")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["archived_tokens"] == 0  # the checkpoint knew of none
    run = ikv("ingest", str(path), "--session", "k", "--json")
    assert run.returncode == 0, run.stderr
    assert "interrupted ingest" in run.stderr and "Traceback" not in run.stderr
    got = json.loads(run.stdout)
    meta = json.loads((ikv_home / "sessions" / "k" / "session.json").read_text())
    assert [d["complete"] for d in meta["documents"]] == [True]
    assert got["archived_tokens"] + got["window_tokens"] - 1 == got["tokens"] == meta["tokens"]


def test_a_second_document_is_appended(ikv, first_ingested, tmp_path, ikv_home):
    key = pass_key_needle(11)
    shutil.copytree(first_ingested[0] / "sessions", ikv_home / "sessions")
    first = json.loads((ikv_home / "sessions" / "s1" / "session.json").read_text())
    second = tmp_path / "second.txt"
    second.write_text(build(90, [FACT_NEEDLES[2]], [0.5], seed=12).text)
    run = ikv("ingest", str(second), "--session", "s1", "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    meta = json.loads((ikv_home / "sessions" / "s1" / "session.json").read_text())
    assert [Path(d["path"]).name for d in meta["documents"]] == ["first.txt", "second.txt"]
    assert all(d["complete"] for d in meta["documents"])
    assert meta["tokens"] == first["tokens"] + got["tokens"]
    assert got["archived_tokens"] > first["archived_tokens"]
    sources = json.loads((ikv_home / "sessions" / "s1" / "archive" / "sources.json").read_text())["sources"]
    assert [Path(s).name for s in sources] == ["first.txt", "second.txt"]
    run = ikv("ask", "What is the pass key?", "--session", "s1", "--json", "-n", "24")
    assert key.answer in json.loads(run.stdout)["answer"]
