"""Session metadata, window headers and turn lines as types: checked, upgraded, refused when newer.

The last test opens a session folder written before the typed model existed (tests/data,
made by ikv at commit 5c09085 with the demo model, `-c 192`, q4_0 cache, one document and
one turn), so a change to the types that loses today's files fails here.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from ikv_local.checkpoint import read_meta_file, read_window, write_meta_file
from ikv_local.history import LOG_FORMAT, History, Turn, decode_line, encode_line
from ikv_local.metadata import (
    FORMAT,
    UPGRADES,
    Document,
    KvTypes,
    MetadataError,
    ModelRef,
    NewerFormat,
    SessionMeta,
    WindowHeader,
    plain,
)

FOLDER = Path(__file__).parent / "data" / "session-format2"
WINDOW = {"layout": {"n_ctx": 192, "sink": 5, "slot": 16, "headroom": 64, "block": 24},
          "sink_tokens": [2, 3], "recent": {"tokens": [7, 8], "roles": [1, 1], "sources": [0, 0],
                                            "segments": [0, 0]},
          "archived": 10, "dropped": 0, "previous_token": 8, "slot_used": 0}


def meta(**changes: object) -> SessionMeta:
    m = SessionMeta("s", ModelRef("/m.gguf", {"sha": "ab", "arch": "gemma3"}), 192,
                    dict(WINDOW["layout"]), [Document("/d.txt", 10, 4, True, "2026")],
                    KvTypes("q8_0", "q8_0"), created="c", updated="u", system="be brief",
                    tokens=14, archived_tokens=10, turns=1, window=WindowHeader(**copy.deepcopy(WINDOW)))
    return replace(m, **changes)


def test_a_session_round_trips_through_its_dict():
    m = meta()
    data = json.loads(json.dumps(m.to_dict()))
    assert data["format"] == FORMAT and SessionMeta.from_dict(data) == m


def test_plain_is_asdict_and_shares_nothing_with_the_session():
    m = replace(meta(), window=replace(meta().window, session=meta().copy()))
    out = plain(m)
    assert out == asdict(m) and {"format": FORMAT, **out} == m.to_dict()
    out["window"]["recent"]["tokens"].append(9)
    out["documents"][0]["path"] = "other"
    out["layout"]["sink"] = 0
    assert m == replace(meta(), window=replace(meta().window, session=meta().copy()))


def test_format_1_is_upgraded_by_its_named_step():
    """Format 1: no checksum, no window copy; early files also lacked kv, system and counts."""
    old = {"name": "s", "model": {"path": "/m.gguf", "fingerprint": {"sha": "ab"}}, "n_ctx": 512,
           "layout": dict(WINDOW["layout"]), "documents": [{"path": "/d.txt", "tokens": 3}],
           "created": "c", "updated": "u"}
    assert UPGRADES[1](dict(old))["format"] == 2
    m = SessionMeta.from_dict(dict(old))
    assert m.kv == KvTypes("f16", "f16") and m.system == "" and m.turns == 0 and m.window is None
    assert m.documents == [Document("/d.txt", tokens=3)]


def test_a_newer_format_is_refused_not_guessed_at():
    with pytest.raises(NewerFormat, match="format 3"):
        SessionMeta.from_dict({**meta().to_dict(), "format": FORMAT + 1})


@pytest.mark.parametrize("change, field", [
    ({"n_ctx": "192"}, "n_ctx"),
    ({"n_ctx": True}, "n_ctx"),
    ({"documents": [{"path": "/d.txt", "tokens": "many"}]}, "documents[0].tokens"),
    ({"kv": {"type_k": 8}}, "kv.type_k"),
    ({"window": {**WINDOW, "archived": None}}, "window.archived"),
    ({"colour": "red"}, "colour"),
])
def test_a_field_of_the_wrong_type_or_unknown_is_named(change, field):
    with pytest.raises(MetadataError, match=field.replace("[", r"\[").replace("]", r"\]")):
        SessionMeta.from_dict({**meta().to_dict(), **change})


def test_a_missing_field_is_named():
    data = meta().to_dict()
    del data["layout"]
    with pytest.raises(MetadataError, match="missing field 'layout'"):
        SessionMeta.from_dict(data)


def test_window_header_drops_heat_and_checks_recent():
    h = WindowHeader.from_dict({**WINDOW, "heat": [[1, 2]]})
    assert h.turns is None and h.committed == 10 and h.tokens == 12
    bad = copy.deepcopy(WINDOW)
    bad["recent"]["roles"] = [1]
    with pytest.raises(MetadataError, match="recent"):
        WindowHeader.from_dict(bad)
    assert h.copy().sketches == "" and h.copy().session is None


def test_session_json_checksum_and_newer_format(tmp_path):
    path = tmp_path / "session.json"
    write_meta_file(path, meta())
    assert read_meta_file(path) == meta()
    data = json.loads(path.read_text())
    data["n_ctx"] = 193
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="fails its checksum"):
        read_meta_file(path)


def test_turn_lines_are_checked_and_newer_lines_refused(tmp_path):
    turn = Turn(1, "q", "a", 0, 5, window_from=0)
    assert decode_line(encode_line(turn)) == turn and LOG_FORMAT == 2
    from ikv_local.history import _digest

    older = {k: v for k, v in turn.to_dict().items() if k != "window_from"}  # format 1
    line = json.dumps(older)
    assert decode_line(f"{_digest(line)} {line}\n".encode()) == Turn(1, "q", "a", 0, 5)
    body = json.dumps({**turn.to_dict(), "tokens": "five"})

    assert decode_line(f"{_digest(body)} {body}\n".encode()) is None  # wrong type: damage
    newer = json.dumps({**turn.to_dict(), "format": LOG_FORMAT + 1})
    (tmp_path / "turns.jsonl").write_text(f"{_digest(newer)} {newer}\n")
    with pytest.raises(NewerFormat, match="newer ikv"):
        History(tmp_path)


def test_a_session_written_before_the_typed_model_opens_and_saves(demo_path, ikv_home):
    from ikv_local.session import OpenOptions, Session

    folder = ikv_home / "sessions" / "before"
    shutil.copytree(FOLDER, folder)
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)
    written = json.loads((folder / "session.json").read_text())
    header, _ = read_window(folder)
    with Session("before", OpenOptions(model=str(demo_path))) as s:
        assert s.meta.kv == KvTypes("q4_0", "q4_0") and s.meta.n_ctx == 192
        assert [asdict(d) for d in s.meta.documents] == [{**written["documents"][0],
                                                          "pruned_all": False}]
        assert s.system == "Answer briefly." and len(s.history) == 1
        assert s.history.turns[0].user == "What colour is the ledger?"
        assert len(s.archive) == written["archived_tokens"] == 168
        assert list(s.window.recent.tokens) == header.recent["tokens"]
        s.save()
    again = read_meta_file(folder / "session.json")
    old = SessionMeta.from_dict(written)
    assert replace(again, updated="", window=None) == replace(old, updated="", window=None)
    assert again.window is not None and again.window.recent == old.window.recent


@pytest.mark.slow
def test_a_session_from_a_newer_ikv_is_refused_in_one_line_and_left_as_it_is(ikv, ikv_home):
    from conftest import assert_one_line_error

    from ikv_local.checkpoint import _digest

    folder = ikv_home / "sessions" / "newer"
    shutil.copytree(FOLDER, folder)
    data = json.loads((folder / "session.json").read_text())
    data["format"] = FORMAT + 1
    data["sha256"] = _digest(data)
    (folder / "session.json").write_text(json.dumps(data))
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for args in (("ask", "hi", "--session", "newer"), ("sessions", "repair", "newer")):
        assert_one_line_error(ikv(*args), 7, "newer ikv", "upgrade ikv")
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()
            if p.name != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}
