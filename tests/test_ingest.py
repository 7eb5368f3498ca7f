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
    assert all(p[-1] in " \n" or p[-1].isalpha() for p, _ in pieces[:-1])
    assert all(not p.startswith(" ") for p, _ in pieces[:1])
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
