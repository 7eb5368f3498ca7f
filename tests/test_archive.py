"""The archive on disk: appends, reopening, damage, and kill -9 in the middle of writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ikv_local.archive import Archive, ArchiveWarning
from ikv_local.record import (
    RECORD_SIZE,
    ArchiveError,
    ArchiveFormatError,
    ArchiveMismatchError,
    encode,
    pack_header,
)

META = {"model_fingerprint": {"arch": "test", "sha": "aa"}, "sketch": {"seed": 1}}


def batch(start: int, n: int) -> np.ndarray:
    """Records for positions [start, start + n), each a function of its position alone, so
    content stays checkable when a writer resumes after a torn batch."""
    pos = np.arange(start, start + n, dtype=np.uint64)
    mixed = (pos[:, None] * np.uint64(2654435761) + np.arange(64, dtype=np.uint64) * np.uint64(40503))
    return encode(position=pos, time_ms=1_700_000_000_000 + pos,
                  token=(pos * 7) % 262_144, segment=pos // 512, source=0, role=2, flags=0,
                  sketch=((mixed >> np.uint64(11)) & np.uint64(255)).astype(np.uint8))


def assert_intact(archive: Archive) -> None:
    recs = archive.records()
    n = len(recs)
    assert archive.usable.all()
    assert np.array_equal(recs["position"], np.arange(n))
    assert np.array_equal(recs["token"], (np.arange(n) * 7) % 262_144)
    assert np.array_equal(recs, batch(0, n))


def test_append_and_reopen(tmp_path):
    a = Archive.create(tmp_path, META)
    a.append(batch(0, 512))
    a.append(batch(512, 512))
    b = Archive(tmp_path, expect=META)
    assert len(b) == 1024 and b.meta["sketch"] == {"seed": 1} and "created" in b.meta
    assert_intact(b)
    assert b.source_id("book.txt") == 0 and b.source_id("chat") == 1
    assert Archive(tmp_path).source_id("book.txt") == 0 and Archive(tmp_path).sources() == ["book.txt", "chat"]


def test_a_torn_tail_is_dropped_with_a_warning(tmp_path):
    a = Archive.create(tmp_path, META)
    a.append(batch(0, 512))
    with open(a.path, "ab") as f:
        f.write(batch(512, 1).tobytes()[:57])  # a record cut short by a crash
    with pytest.warns(ArchiveWarning, match="torn tail of 57 bytes"):
        ro = Archive(tmp_path, writable=False)
    assert len(ro) == 512
    assert a.path.stat().st_size % RECORD_SIZE != 0  # read-only: nothing changed on disk
    with pytest.warns(ArchiveWarning):
        rw = Archive(tmp_path)
    assert (rw.path.stat().st_size - rw.header.header_size) == 512 * RECORD_SIZE
    rw.append(batch(512, 512))
    assert_intact(Archive(tmp_path))


def test_whole_records_that_fail_their_checksum_at_the_end_are_dropped(tmp_path):
    a = Archive.create(tmp_path, META)
    a.append(batch(0, 512))
    with open(a.path, "ab") as f:
        f.write(b"\0" * RECORD_SIZE * 3)  # pages extended but never written
    with pytest.warns(ArchiveWarning, match="3 incomplete records"):
        assert len(Archive(tmp_path)) == 512


def test_a_flipped_byte_inside_is_never_served(tmp_path):
    a = Archive.create(tmp_path, META)
    a.append(batch(0, 512))
    offset = a.header.header_size + 100 * RECORD_SIZE + 40
    with open(a.path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.warns(ArchiveWarning, match="1 damaged records"):
        b = Archive(tmp_path)
    assert len(b) == 512 and not b.usable[100] and b.usable.sum() == 511


def test_another_model_or_version_is_one_clear_error(tmp_path):
    Archive.create(tmp_path, META)
    other = {**META, "model_fingerprint": {"arch": "llama", "sha": "bb"}}
    with pytest.raises(ArchiveMismatchError) as err:
        Archive(tmp_path, expect=other)
    assert "\n" not in str(err.value) and "llama" in str(err.value)
    path = tmp_path / "records.ikv"
    data = bytearray(path.read_bytes())
    data[8] = 9  # format version
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveFormatError, match="version 9"):
        Archive(tmp_path)


def test_not_an_archive(tmp_path):
    (tmp_path / "records.ikv").write_bytes(b"hello, not an archive" * 10)
    with pytest.raises(ArchiveFormatError, match="not an ikv archive"):
        Archive(tmp_path)


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_archive import batch, META
    from ikv_local.archive import Archive
    a = Archive({folder!r})
    start = len(a)
    print("ready", flush=True)
    while True:
        a.append(batch(start, 512))
        start += 512
""")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_kill_9_during_appends_keeps_every_complete_record(tmp_path, delay):
    Archive.create(tmp_path, META).append(batch(0, 512))
    code = WRITER.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    for round_ in range(2):  # kill, reopen, keep writing, kill again
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ArchiveWarning)  # a torn tail, if the kill tore one
            a = Archive(tmp_path)
        assert len(a) >= 512
        assert_intact(a)


def test_header_is_written_whole_or_not_at_all(tmp_path):
    # create() writes a temporary file and renames it: no half header can exist
    a = Archive.create(tmp_path, META)
    assert a.path.read_bytes() == pack_header({**META, "created": a.meta["created"]})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_truncate_keeps_the_first_records_and_survives_reopening(tmp_path):
    archive = Archive.create(tmp_path, META)
    archive.append(batch(0, 300))
    archive.truncate(120)
    assert len(archive) == 120 and len(archive.usable) == 120
    again = Archive(tmp_path)
    assert len(again) == 120
    assert again.records()["position"].tolist() == list(range(120))
    again.append(batch(120, 5))
    assert Archive(tmp_path).records()["position"].tolist() == list(range(125))
    with pytest.raises(ArchiveError, match="cannot keep"):
        again.truncate(500)


def test_token_counts_follow_appends_and_truncation(tmp_path):
    archive = Archive.create(tmp_path, META)
    archive.append(batch(0, 200))
    want = lambda recs: np.bincount(recs["token"].astype(np.int64))  # noqa: E731
    np.testing.assert_array_equal(archive.token_counts(), want(archive.records()))
    archive.append(batch(200, 50))
    got = archive.token_counts()
    np.testing.assert_array_equal(got[: len(want(archive.records()))], want(archive.records()))
    assert got.sum() == 250
    archive.truncate(120)
    archive.append(batch(500, 30))
    assert archive.token_counts().sum() == 150
    np.testing.assert_array_equal(archive.token_counts()[: len(want(archive.records()))],
                                  want(archive.records()))
