"""Damage a real session the ways issue 20 found, through the real CLI: nothing is lost,
every refusal is one line, `ikv sessions check` names the damage and `repair` undoes it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import NAME, assert_one_line_error, run_ikv
from forked import Child

from ikv_local.haystack import FACT_NEEDLES, build
from ikv_local.record import RECORD_SIZE, header_size


def _records(folder: Path) -> int:
    path = folder / "archive" / "records.ikv"
    with open(path, "rb") as f:
        head = header_size(f.read(64))
    return (path.stat().st_size - head) // RECORD_SIZE


def _show(name: str = NAME) -> dict:
    run = run_ikv("sessions", "show", name, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _ask_ok(name: str = NAME) -> dict:
    run = run_ikv("ask", "What is this about?", "--session", name, "--json", "-n", "4")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _check(name: str = NAME) -> tuple[int, dict]:
    run = run_ikv("sessions", "check", name, "--json")
    return run.returncode, json.loads(run.stdout)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_sound_session_checks_sound(folder):
    code, report = _check()
    assert code == 0 and report["sound"], report
    assert {f["part"] for f in report["findings"]} >= {"session.json", "window.bin", "archive",
                                                       "sources", "turns", "agreement"}


@pytest.mark.slow
def test_a_lost_window_is_refused_not_truncated_and_repair_decodes_it_again(folder, tmp_path):
    before, records = _show(), _records(folder)
    (folder / "window.bin").unlink()
    assert_one_line_error(run_ikv("ask", "x", "--session", NAME), 7, "window checkpoint", "repair")
    more = tmp_path / "more.txt"
    more.write_text("More text.\n")
    assert_one_line_error(run_ikv("ingest", str(more), "--session", NAME), 7, "repair")
    assert _records(folder) == records  # the old code cut the archive to nothing here
    code, report = _check()
    assert code == 1 and not report["sound"]
    assert next(f for f in report["findings"] if f["part"] == "window.bin")["detail"] == "missing"
    run = run_ikv("sessions", "repair", NAME, "--json")
    assert run.returncode == 0, run.stderr
    assert any("decoded the window again" in a for a in json.loads(run.stdout)["actions"])
    after = _show()
    assert after["tokens"] == before["tokens"] and after["archived_tokens"] == before["archived_tokens"]
    assert _records(folder) == records
    assert _ask_ok()["archived_tokens"] == before["archived_tokens"]
    assert _check()[0] == 0


@pytest.mark.slow
def test_a_lost_session_json_is_refused_and_restored_from_the_checkpoint(folder, tmp_path):
    before = _show()
    (folder / "session.json").unlink()
    doc = tmp_path / "d.txt"
    doc.write_text("Some text.\n")
    assert_one_line_error(run_ikv("ingest", str(doc), "--session", NAME, "-c", "2048"), 7,
                          "lost its session.json", "repair")
    listed = json.loads(run_ikv("sessions", "list", "--json").stdout)
    assert [i["name"] for i in listed] == [NAME] and "repair" in listed[0]["problem"]
    assert run_ikv("sessions", "repair", NAME).returncode == 0
    after = _show()
    assert after["n_ctx"] == 512 and after["documents"] == before["documents"]
    assert after["tokens"] == before["tokens"]


@pytest.mark.slow
def test_a_changed_digit_in_session_json_is_caught(folder):
    meta = json.loads((folder / "session.json").read_text())
    meta["archived_tokens"] += 1
    (folder / "session.json").write_text(json.dumps(meta, indent=1))
    assert_one_line_error(run_ikv("ask", "x", "--session", NAME), 7, "checksum", "repair")
    assert _check()[0] == 1
    assert run_ikv("sessions", "repair", NAME).returncode == 0
    assert _show()["archived_tokens"] == meta["archived_tokens"] - 1


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "flip"])
def test_damaged_sources_are_refused_and_rebuilt(folder, damage):
    path = folder / "archive" / "sources.json"
    names = json.loads(path.read_text())["sources"]
    if damage == "delete":
        path.unlink()
    else:
        path.write_text(path.read_text().replace("doc.txt", "doc.txu"))
    assert_one_line_error(run_ikv("ask", "x", "--session", NAME), 7, "repair")
    assert _check()[0] == 1
    assert run_ikv("sessions", "repair", NAME).returncode == 0
    assert json.loads(path.read_text())["sources"] == names
    assert _check()[0] == 0


@pytest.mark.slow
def test_a_flipped_byte_in_the_turn_log_is_set_aside(folder):
    log = folder / "turns.jsonl"
    first = log.read_bytes().split(b"\n")[0]
    _flip(log, len(first) // 2)
    run = run_ikv("ask", "What is this about?", "--session", NAME, "--json", "-n", "4")
    assert run.returncode == 0, run.stderr  # served around the damage, with a warning
    assert "repair" in run.stderr
    code, report = _check()
    assert code == 1 and "turn(s) 1" in json.dumps(report)
    run = run_ikv("sessions", "repair", NAME, "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert any("turn(s) 1" in x for x in got["lost"]) and got["set_aside"]
    aside = list((folder / "damaged").rglob("turns.jsonl"))
    assert aside and aside[0].read_bytes().startswith(first[:8])
    assert _check()[0] == 0
    exported = json.loads(run_ikv("sessions", "export", NAME, "-f", "json").stdout)
    assert [t["n"] for t in exported["turns"]] == [2]


@pytest.mark.slow
def test_two_repairs_in_one_second_keep_both_damaged_copies(folder, monkeypatch):
    from types import SimpleNamespace

    from ikv_local import repair

    monkeypatch.setattr(repair, "time", SimpleNamespace(strftime=lambda fmt: "20261207-120000"))
    log = folder / "turns.jsonl"
    damaged = []
    for _ in range(2):
        _flip(log, len(log.read_bytes().split(b"\n")[0]) // 2)
        damaged.append(log.read_bytes().split(b"\n")[0] + b"\n")  # the line set aside
        run = run_ikv("sessions", "repair", NAME)
        assert run.returncode == 0, run.stderr
    aside = sorted((folder / "damaged").rglob("turns.jsonl"))
    assert [p.parent.name for p in aside] == ["20261207-120000", "20261207-120000-2"]
    assert [p.read_bytes() for p in aside] == damaged


@pytest.mark.slow
def test_a_flipped_byte_in_the_last_record_loses_one_token_not_the_session(folder):
    records = _records(folder)
    path = folder / "archive" / "records.ikv"
    _flip(path, path.stat().st_size - RECORD_SIZE + 10)
    assert _ask_ok()["archived_tokens"] == _show()["archived_tokens"]
    run = run_ikv("sessions", "reindex", NAME, "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["damaged"] == 1
    assert _records(folder) == records  # the old reindex cut the record away for good
    assert _check()[0] == 1
    got = json.loads(run_ikv("sessions", "repair", NAME, "--json").stdout)
    assert any(f"records {records - 1}" in x for x in got["lost"]), got
    assert _records(folder) == records and (folder / "damaged").is_dir()


@pytest.mark.slow
def test_a_reader_sees_exactly_the_last_checkpoint_after_a_kill(folder, tmp_path):
    """kill -9 at a write of a second ingest, after records went past the checkpoint."""
    before = _show()
    doc = tmp_path / "second.txt"
    doc.write_text(build(30, [], [], seed=9).text)
    sites = tmp_path / "sites.txt"
    assert run_ikv("ingest", str(doc), "--session", "probe", "-c", "512",
                   env={"IKV_FAULT": f"count:{sites}"}).returncode == 0
    shutil.rmtree(folder.parent / "probe")
    # the session's first own write after its records grew: the second append of records
    appends = [int(line.split()[0]) for line in sites.read_text().splitlines()
               if "append records.ikv" in line]
    run = run_ikv("ingest", str(doc), "--session", NAME, env={"IKV_FAULT": f"kill:{appends[1]}"})
    assert run.returncode == -9
    assert _records(folder) > before["archived_tokens"]  # an uncommitted tail is on disk
    from ikv_local.session import OpenOptions, Session

    with Session(NAME, OpenOptions(writable=False)) as s:  # what recall searches
        assert len(s.archive) == s.window.archived == before["archived_tokens"]
    assert _ask_ok()["archived_tokens"] == before["archived_tokens"]
    assert _records(folder) > before["archived_tokens"]  # and a reader left it there


def test_rm_of_a_linked_session_removes_only_the_link(folder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(folder), str(elsewhere))
    folder.symlink_to(elsewhere, target_is_directory=True)
    run = run_ikv("sessions", "rm", NAME, "--yes")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "only the link" in run.stderr
    assert not folder.exists() and not folder.is_symlink()
    assert (elsewhere / "session.json").is_file() and (elsewhere / "archive").is_dir()


@pytest.mark.slow
def test_two_processes_on_a_new_session_leave_one_writer(ikv, tmp_path, ikv_home):
    doc = tmp_path / "small.txt"
    doc.write_text(build(60, [], [], seed=2).text)
    fact = tmp_path / "fact.txt"
    fact.write_text(FACT_NEEDLES[1].fact + "\n")
    first = Child(("ingest", str(doc), "--session", "race", "-c", "512"))
    lock = ikv_home / "sessions" / "race" / ".lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_ikv("ingest", str(fact), "--session", "race")
    assert_one_line_error(second, 7, "in use")
    if first.poll() is None:
        assert lock.exists()  # the old code removed the first one's lock here
        third = run_ikv("ingest", str(fact), "--session", "race")
        assert_one_line_error(third, 7, "in use")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert _check("race")[0] == 0
    _ask_ok("race")
