"""Sessions on disk: checkpoints that agree with the archive, locks, damage detected."""

from __future__ import annotations

import shutil

import pytest

from ikv_local.archive import Archive
from ikv_local.session import OpenOptions, Session, SessionBusy, SessionError, check_name


@pytest.fixture
def copy(book, ikv_home):
    """A private copy of the shared book session."""
    shutil.copytree(book.home / "sessions" / "book", ikv_home / "sessions" / "book")
    return ikv_home / "sessions" / "book"


def test_names_are_plain():
    assert check_name("my-book_2.txt") == "my-book_2.txt"
    for bad in ("", "../x", "a/b", ".hidden", "x" * 65, "a b"):
        with pytest.raises(SessionError, match="plain names"):
            check_name(bad)


def test_records_past_the_checkpoint_are_cut_with_a_warning(copy):
    archive = Archive(copy / "archive")
    n = len(archive)
    archive.append(archive.records()[:10].copy())  # as an ingest killed after a checkpoint
    with pytest.warns(UserWarning, match="interrupted ingest"), Session("book", OpenOptions()) as s:
        assert len(s.archive) == n == s.window.archived
    # read-only opens never cut; the checkpoint still hides nothing it knows
    with Session("book", OpenOptions(writable=False)) as s:
        assert len(s.archive) == n


def test_one_writer_at_a_time(copy):
    with Session("book", OpenOptions()):
        with pytest.raises(SessionBusy, match="in use by another ikv process"):
            Session("book", OpenOptions())
        with pytest.raises(SessionBusy):
            Session("book", OpenOptions(writable=False))
    with Session("book", OpenOptions(writable=False)), Session("book", OpenOptions(writable=False)):
        pass  # readers share


def test_a_session_opens_with_its_own_sketch_where_the_model_measures_another(
        copy, demo_path, monkeypatch, tmp_path):
    """Carried to a machine whose kernels measure the model's sketch means a few ulps
    apart, a session still opens and recalls with the sketch its records were made with;
    only new sessions take the model's."""
    import json

    from ikv_local.fingerprint import model_fingerprint
    from ikv_local.paths import cache_dir
    from ikv_local.sketch import SketchSpec

    made = Archive.stored_meta(copy / "archive")
    entry = f"{made['model_fingerprint']['sha']}.json"
    shared = json.loads((cache_dir() / "sketch" / entry).read_text())
    shared["means"][0][1] += 1e-6  # as the other machine measured it
    monkeypatch.setenv("IKV_CACHE", str(tmp_path))
    (tmp_path / "sketch").mkdir()
    (tmp_path / "sketch" / entry).write_text(json.dumps(shared))
    for writable in (False, True):
        with Session("book", OpenOptions(writable=writable)) as s:
            assert s.spec == SketchSpec.from_dict(made["sketch"])
            assert model_fingerprint(s.engine)["sha"] == made["model_fingerprint"]["sha"]
    with Session("new", OpenOptions(model=str(demo_path), create=True, n_ctx=256)) as s:
        assert s.spec.means[0][1] == shared["means"][0][1]
        assert s.archive.meta["sketch"]["means"] == shared["means"]


def test_a_damaged_checkpoint_is_refused_in_one_line(copy):
    path = copy / "window.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SessionError, match="fails its checksum"):
        Session("book", OpenOptions(writable=False))


@pytest.mark.slow
def test_two_writers_racing_on_a_session_leave_it_sound(demo_path, tmp_path):
    """A few tries of scripts/race.py: new and existing sessions, random start delays."""
    from ikv_local.haystack import FACT_NEEDLES, build
    from race import loop

    small, fact = tmp_path / "small.txt", tmp_path / "fact.txt"
    small.write_text(build(60, [], [], seed=2).text)
    fact.write_text(FACT_NEEDLES[1].fact + "\n")
    tries = loop(tmp_path / "home", (small, fact), 4, seed=1)
    assert [t.why for t in tries if not t.ok] == []
    assert any(0 in t.codes and 7 in t.codes for t in tries)  # the race was on at least once


def test_sessions_are_listed_newest_first_damaged_ones_too(ikv_home):
    """One order for `ikv sessions list` and the TUI, decided in the library."""
    from ikv_local.checkpoint import write_meta_file
    from ikv_local.metadata import ModelRef, SessionMeta
    from ikv_local.session import list_sessions

    layout = {"n_ctx": 512, "sink": 1, "slot": 128, "headroom": 64, "block": 64}
    for name, updated in (("a", "2026-01-02T00:00:00Z"), ("b", "2026-03-01T00:00:00Z"),
                          ("c", "2026-02-01T00:00:00Z")):
        folder = ikv_home / "sessions" / name
        folder.mkdir(parents=True)
        write_meta_file(folder / "session.json", SessionMeta(
            name, ModelRef("/m.gguf", {"sha": "ab", "arch": "gemma3"}), 512, layout, [],
            updated=updated))
    lost = ikv_home / "sessions" / "d"
    lost.mkdir()
    (lost / "turns.jsonl").write_text("x\n")  # data without session.json: listed, with its problem
    infos = list_sessions()
    assert [i.name for i in infos] == ["b", "c", "a", "d"]
    assert infos[-1].problem and "repair" in infos[-1].problem
