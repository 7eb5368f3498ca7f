"""Reading text files: pieces on whitespace, strict UTF-8, refusals before anything is read."""

from __future__ import annotations

import pytest

from ikv_local.ingest import InputError, check_text_file, text_pieces


def test_text_pieces_end_on_whitespace_and_rebuild_the_file(tmp_path):
    text = "héllo wörld, ünïcode " * 500 + "\nlast line without end"
    path = tmp_path / "t.txt"
    path.write_text(text)
    pieces = list(text_pieces(path, read_bytes=1000))
    assert len(pieces) > 5
    assert "".join(p for p, _ in pieces) == text
    # every cut falls just before whitespace, so the tokenizer joins the space to the next word
    assert all(p[0] in " \n" for p, _ in pieces[1:])
    assert not pieces[0][0].isspace() and not any(p[-1].isspace() for p, _ in pieces[:-1])
    assert pieces[-1][1] == path.stat().st_size


def test_a_bad_byte_deep_in_a_file_is_reported_with_its_offset(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"fine text " * 10000 + b"\xff tail")
    assert check_text_file(path) == path.stat().st_size  # the head is fine
    with pytest.raises(InputError, match="not UTF-8 text .* offset 100000"):
        list(text_pieces(path))


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"\x00\x01\x02", "binary"), ("caf\xe9".encode("latin-1"), "UTF-8"),
])
def test_refusals(tmp_path, content, message):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        check_text_file(path)


def test_a_run_with_no_whitespace_is_cut_between_characters(tmp_path):
    text = "é" * 1500 + "ü" * 1500  # 6,000 bytes, no whitespace at all, no newline
    path = tmp_path / "one-line.txt"
    path.write_text(text)
    pieces = list(text_pieces(path, read_bytes=1000))
    assert len(pieces) >= 5  # read piece by piece, not held until the end of the file
    assert "".join(p for p, _ in pieces) == text
    assert all(len(p) <= 2000 for p, _ in pieces)
    assert [done for _, done in pieces] == sorted(done for _, done in pieces)


@pytest.mark.slow
def test_a_one_line_document_is_checkpointed_while_it_is_read(ikv, tmp_path, ikv_home):
    """Checkpoints come by time inside a piece too: a kill -9 mid-document keeps the part read
    up to the last one (the checkpoint interval cut to 1 s here, from 60)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from ikv_local.haystack import build

    path = tmp_path / "line.txt"
    path.write_text(build(200, [], [], seed=6).text)  # one line, 15 KB: a single piece
    code = ("import ikv_local.ingest as ingest; ingest.CHECKPOINT_SECONDS = 1.0\n"
            "from ikv_local.cli import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "ingest", str(path), "--session", "l",
                             "-c", "512"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = ikv_home / "sessions" / "l" / "session.json"
    doc: dict = {}
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            docs = json.loads(meta.read_text())["documents"]
        except (OSError, ValueError, KeyError):
            docs = []
        if docs and docs[0]["tokens"] > 0:
            os.kill(proc.pid, signal.SIGKILL)  # right after the first checkpoint with tokens
            doc = docs[0]
            break
        time.sleep(0.05)
    proc.wait()
    assert doc and not doc["complete"], "no checkpoint before the whole line was read"
    shown = json.loads(ikv("sessions", "show", "l", "--json").stdout)
    assert 0 < shown["tokens"] < 2000  # of 2,990: the checkpoint came early
    assert shown["documents"][0]["complete"] is False
