"""How ikv writes: owner-only whatever the umask, nothing left behind by a failed write, one
line for a full disk or a read-only filesystem, and every write site survives every fault."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import NAME, assert_one_line_error, made_once_per_run, run_ikv
from faults import make_template, sweep

from ikv_local import files
from ikv_local.files import StorageError, private_dir, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_are_owner_only_whatever_the_umask(tmp_path, umask_022):
    folder = private_dir(tmp_path / "a" / "b")
    assert _mode(tmp_path / "a") == _mode(folder) == 0o700
    write_atomic(folder / "f", b"x")
    assert _mode(folder / "f") == 0o600
    os.umask(0o277)  # even a umask that would leave the owner unable to write
    write_atomic(folder / "g", b"y")
    assert _mode(folder / "g") == 0o600


def test_a_folder_where_a_file_is_is_one_clear_error(tmp_path):
    (tmp_path / "home").write_text("not a folder")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        private_dir(tmp_path / "home" / "sessions")


@pytest.mark.parametrize("kind", ["enospc", "eio"])
def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, kind):
    path = tmp_path / "window.bin"
    write_atomic(path, b"committed")
    monkeypatch.setattr(files, "_FAULT", f"{kind}:1")
    monkeypatch.setattr(files, "_calls", 0)
    with pytest.raises(StorageError, match="what was saved before is intact"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"committed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["window.bin"]


@pytest.mark.slow
def test_a_session_is_owner_only(folder, tmp_path, umask_022):
    doc = tmp_path / "d.txt"
    doc.write_text("A short note.\n")
    assert run_ikv("ingest", str(doc), "--session", "fresh", "-c", "512").returncode == 0
    root = folder.parent / "fresh"
    assert _mode(root) == 0o700
    for p in root.rglob("*"):
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p


@pytest.mark.slow
def test_export_never_overwrites_without_force_and_keeps_the_mode(folder, tmp_path):
    out = tmp_path / "notes.md"
    out.write_text("mine")
    out.chmod(0o644)
    run = run_ikv("sessions", "export", NAME, "-o", str(out))
    assert_one_line_error(run, 1, "exists", "--force")
    assert out.read_text() == "mine"
    assert run_ikv("sessions", "export", NAME, "-o", str(out), "--force").returncode == 0
    assert out.read_text().startswith(f"# Session {NAME}") and _mode(out) == 0o644
    new = tmp_path / "new.md"
    assert run_ikv("sessions", "export", NAME, "-o", str(new)).returncode == 0
    assert _mode(new) == 0o600
    failed = tmp_path / "failed.md"
    run = run_ikv("sessions", "export", NAME, "-o", str(failed), env={"IKV_FAULT": "enospc:1"})
    assert_one_line_error(run, 5, "disk is full")
    assert not failed.exists() and not list(tmp_path.glob(".failed.md.*"))


@pytest.fixture
def read_only(ikv_home: Path):
    """IKV_HOME bind-mounted read-only over itself (needs the right to mount)."""
    done = subprocess.run(["mount", "--bind", str(ikv_home), str(ikv_home)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ikv_home)], check=False).returncode:
            pytest.skip("cannot remount read-only here")
        yield ikv_home
    finally:
        subprocess.run(["umount", str(ikv_home)], check=False)


@pytest.mark.slow
def test_a_read_only_filesystem_reads_and_refuses_writes_in_one_line(folder, read_only, tmp_path):
    with pytest.raises(OSError):
        (read_only / "probe").write_text("x")
    run = run_ikv("ask", "What is this about?", "--session", NAME, "--json", "-n", "4")
    assert run.returncode == 0, run.stderr
    assert run_ikv("sessions", "show", NAME, "--json").returncode == 0
    assert run_ikv("sessions", "export", NAME).stdout.startswith(f"# Session {NAME}")
    doc = tmp_path / "d.txt"
    doc.write_text("More.\n")
    assert_one_line_error(run_ikv("ingest", str(doc), "--session", NAME), 5, "read-only")
    assert_one_line_error(run_ikv("ingest", str(doc), "--session", "other"), 5, "read-only")


@pytest.fixture(scope="session")
def fault_template(demo_path, tmp_path_factory) -> tuple[Path, Path]:
    """One template session for every operation's sweep (each trial works on a copy)."""
    root = made_once_per_run(tmp_path_factory, "faults", make_template)
    return root / "template", root / "docs"


@pytest.mark.slow
@pytest.mark.parametrize("op,kinds", [("ingest", ("enospc", "kill")),
                                      ("chat-turn", ("enospc", "eio", "kill", "torn")),
                                      ("undo", ("enospc", "kill")), ("fork", ("kill",))])
def test_every_write_of_an_operation_survives_every_fault(fault_template, op, kinds):
    """A slice of scripts/faults.py: each write call in turn fails or dies; nothing is lost."""
    result, sites = sweep([op], kinds, made=fault_template)
    assert sites[op] >= 3 and len(result.trials) == sites[op] * len(kinds)
    assert result.losses == [], json.dumps([t.__dict__ for t in result.losses], indent=1)


def test_one_at_a_time_makes_a_second_holder_wait_for_the_first(tmp_path):
    import threading
    import time

    lock = tmp_path / "cache" / "x.lock"
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with files.one_at_a_time(lock):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    with files.one_at_a_time(lock):
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
    assert _mode(lock) == 0o600 and _mode(lock.parent) == 0o700


def test_made_once_reads_what_a_holder_made_while_it_waited(tmp_path):
    import threading
    import time

    lock, made = tmp_path / "x.lock", tmp_path / "x.json"
    calls: list[str] = []
    held = threading.Event()

    def ready() -> str | None:
        return made.read_text() if made.exists() else None

    def first() -> None:
        with files.one_at_a_time(lock):
            held.set()
            time.sleep(0.3)
            made.write_text("first")

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    got = files.made_once(lock, ready, lambda: calls.append("made") or "second")
    t.join()
    assert got == "first" and calls == []  # read again under the lock, not made twice
    made.unlink()
    assert files.made_once(lock, ready, lambda: calls.append("made") or "second") == "second"
    assert calls == ["made"]


def test_a_name_taken_gets_the_next_free_suffix(tmp_path):
    from ikv_local.files import unused

    base = tmp_path / "chat-20261207-120000"
    assert unused(base) == base
    base.mkdir()
    (tmp_path / "chat-20261207-120000-2").mkdir()
    assert unused(base) == tmp_path / "chat-20261207-120000-3"
