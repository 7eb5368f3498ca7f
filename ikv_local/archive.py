"""The archive of one session: append-only 104-byte records in a memory-mapped file.

Crash safety comes from the record format, not from locks or journals: the header is written
once (to a temporary name, fsynced, renamed); records are only ever appended, in whole
batches, and fsynced. A process killed mid-append leaves at worst a torn tail: bytes that are
not a whole record, or whole records whose checksums fail. A session opens its archive with
the count its last checkpoint committed: records past it are cut (writers) or hidden
(readers); a record within it that fails its checksum is damage (bit rot), kept on disk but
never served, and never mistaken for a torn tail. Opened without a count, trailing bad
records are taken for a torn tail.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ikv_local import files
from ikv_local.files import write_atomic
from ikv_local.record import (
    FIXED_HEADER_SIZE,
    RECORD_DTYPE,
    RECORD_SIZE,
    ArchiveError,
    ArchiveFormatError,
    Header,
    check_compatible,
    header_size,
    pack_header,
    unpack_header,
    valid,
)

RECORDS_FILE = "records.ikv"
_WORDS_PER_RECORD = RECORD_SIZE // 4
_SKETCH_WORDS = slice(RECORD_DTYPE.fields["sketch"][1] // 4, (RECORD_DTYPE.fields["sketch"][1] + 64) // 4)
SOURCES_FILE = "sources.json"


def _read_header(path: Path) -> Header:
    with open(path, "rb") as f:
        fixed = f.read(FIXED_HEADER_SIZE)
        head = fixed + f.read(header_size(fixed) - len(fixed))
    header = unpack_header(head)
    if len(head) < header.header_size:
        raise ArchiveFormatError(f"truncated header in {path}")
    return header


class ArchiveWarning(UserWarning):
    """Something was dropped or skipped on open; the archive itself is usable."""


@dataclass
class OpenReport:
    """What opening found: the counts a user or test may want to see."""

    records: int = 0
    torn_bytes: int = 0
    dropped_tail: int = 0  # whole records past the last checkpoint (or torn), not served
    missing: int = 0  # records the checkpoint counts that the file no longer holds
    bad_inside: list[int] = field(default_factory=list)


class Archive:
    """Records of one session. `Archive.create` makes one; `Archive(path)` opens it."""

    def __init__(self, folder: str | os.PathLike[str], *, writable: bool = True,
                 expect: dict[str, Any] | None = None,
                 committed_total: int | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RECORDS_FILE
        if not self.path.is_file():
            raise ArchiveError(f"no archive in {self.folder}")
        self.header = _read_header(self.path)
        if expect is not None:
            check_compatible(self.header.meta, expect)
        self.writable = writable
        self.report = OpenReport()
        self._map: np.ndarray | None = None
        self._words: np.ndarray | None = None
        self._counts = np.zeros(0, np.int64)  # token id -> occurrences in the first _counted
        self._counted = 0
        self._valid: np.ndarray | None = None
        self._recover(committed_total)

    # -- creating and opening ----------------------------------------------------

    @classmethod
    def create(cls, folder: str | os.PathLike[str], meta: dict[str, Any]) -> Archive:
        folder = files.private_dir(Path(folder))
        path = folder / RECORDS_FILE
        if path.exists():
            raise ArchiveError(f"an archive already exists in {folder}")
        meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}
        write_atomic(path, pack_header(meta))
        return cls(folder)

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike[str], meta: dict[str, Any],
                       keys: tuple[str, ...] = ("model_fingerprint", "sketch"),
                       committed_total: int | None = None) -> Archive:
        if (Path(folder) / RECORDS_FILE).exists():
            return cls(folder, expect={k: meta[k] for k in keys if k in meta},
                       committed_total=committed_total)
        return cls.create(folder, meta)

    def _recover(self, committed_total: int | None) -> None:
        body = self.path.stat().st_size - self.header.header_size
        n, torn = divmod(body, RECORD_SIZE)
        ok = valid(self._records(n)) if n else np.zeros(0, bool)
        if committed_total is None:  # no checkpoint to go by: trailing bad records are torn
            keep = n
            while keep and not ok[keep - 1]:
                keep -= 1
        else:  # a session's checkpoint says how many records are committed
            want = committed_total - self.pruned
            keep = min(n, want)
            self.report.missing = max(0, want - n)
        self.report.torn_bytes = torn
        self.report.dropped_tail = n - keep
        self.report.bad_inside = np.flatnonzero(~ok[:keep]).tolist()
        self._n = keep
        self.report.records = keep
        self._valid = ok[:keep]
        if (torn or keep < n) and committed_total is None:
            warnings.warn(f"archive {self.path}: dropped a torn tail of {torn} bytes and "
                          f"{n - keep} incomplete records left by an interrupted write",
                          ArchiveWarning, stacklevel=3)
        if (torn or keep < n) and self.writable:  # the session says so in its own words
            files.truncate(self.path, self.header.header_size + keep * RECORD_SIZE)
            self._map = self._words = None
        if self.report.bad_inside:
            warnings.warn(
                f"archive {self.path}: {len(self.report.bad_inside)} damaged records "
                "will not be served",
                ArchiveWarning,
                stacklevel=3,
            )

    @staticmethod
    def stored_meta(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The header's metadata alone, or None where there is no readable header (opening
        the archive then says what is wrong)."""
        try:
            return _read_header(Path(folder) / RECORDS_FILE).meta
        except (OSError, ArchiveError):
            return None

    # -- reading -----------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        return self.header.meta

    def __len__(self) -> int:
        return self._n

    def _records(self, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, RECORD_DTYPE)
        if self._map is None or len(self._map) != n:
            self._map = np.memmap(self.path, RECORD_DTYPE, "r", self.header.header_size, (n,))
        return self._map

    def records(self) -> np.ndarray:
        """All complete records, memory-mapped (read-only); check `usable` before serving."""
        return self._records(self._n)

    @property
    def usable(self) -> np.ndarray:
        """Per record: passed its checksum (only these may be recalled)."""
        assert self._valid is not None
        return self._valid

    def token_counts(self) -> np.ndarray:
        """Occurrences of each token id, counted once and then only for new records."""
        if self._counted < self._n:
            new = np.bincount(np.asarray(self.records()["token"][self._counted :], dtype=np.int64))
            size = max(len(new), len(self._counts))
            self._counts = np.pad(self._counts, (0, size - len(self._counts)))
            self._counts[: len(new)] += new
            self._counted = self._n
        return self._counts

    def sketches(self) -> np.ndarray:
        return self.records()["sketch"]

    def sketch_words(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Sketches of the given records (all when None) as contiguous uint64 [n, 8].

        Gathering whole rows of a 32-bit view, then slicing, is several times faster than
        gathering the strided `sketch` field of the structured memmap.
        """
        if self._n == 0:
            return np.zeros((0, 8), np.uint64)
        if self._words is None or len(self._words) != self._n:
            self._words = np.memmap(self.path, np.uint32, "r", self.header.header_size,
                                    (self._n, _WORDS_PER_RECORD))
        rows = self._words if ids is None else np.take(self._words, ids, axis=0)
        return np.ascontiguousarray(rows[:, _SKETCH_WORDS]).view(np.uint64)

    # -- writing -----------------------------------------------------------------

    def append(self, records: np.ndarray, *, sync: bool = True) -> None:
        """Append whole records in one write; fsync unless told otherwise."""
        if not self.writable:
            raise ArchiveError(f"archive {self.path} was opened read-only")
        if records.dtype != RECORD_DTYPE:
            raise ArchiveError("append takes records made by ikv_local.record.encode")
        if len(records) == 0:
            return
        files.append(self.path, np.ascontiguousarray(records).tobytes(), sync=sync)
        self._n += len(records)
        self._valid = np.concatenate([self.usable, valid(records)])
        self._map = self._words = None

    def truncate(self, n: int) -> None:
        """Keep the first n records (records written past a session's last checkpoint)."""
        if not self.writable:
            raise ArchiveError(f"archive {self.path} was opened read-only")
        if not 0 <= n <= self._n:
            raise ArchiveError(f"cannot keep {n} of {self._n} records")
        files.truncate(self.path, self.header.header_size + n * RECORD_SIZE)
        self._n = n
        self._valid = self.usable[:n]
        self._map = self._words = None
        self._counts, self._counted = np.zeros(0, np.int64), 0

    def drop_front(self, n: int) -> None:
        """Prune the first n records: the file is rewritten whole and replaced atomically.

        The header counts the records pruned so far, so a session whose checkpoint was not
        updated after a crash can tell its window how far the archive moved.
        """
        if not self.writable:
            raise ArchiveError(f"archive {self.path} was opened read-only")
        if not 0 < n <= self._n:
            raise ArchiveError(f"cannot prune {n} of {self._n} records")
        meta = {**self.header.meta, "pruned": int(self.header.meta.get("pruned", 0)) + n}
        head = pack_header(meta)
        keep = np.ascontiguousarray(self.records()[n:]).tobytes()
        self._map = self._words = None
        write_atomic(self.path, head + keep)
        self.header = unpack_header(head)
        self._n -= n
        self._valid = self.usable[n:]
        self._counts, self._counted = np.zeros(0, np.int64), 0

    @property
    def pruned(self) -> int:
        """Records pruned from the front, all told."""
        return int(self.header.meta.get("pruned", 0))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    # -- sources: where archived tokens came from ---------------------------------

    def sources(self) -> list[str]:
        """Source names by id, checked against their checksum (a flipped byte would misattribute)."""
        path = self.folder / SOURCES_FILE
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArchiveFormatError(f"unreadable {path}: {exc}") from None
        if isinstance(data, dict):  # since format 2: {"sources": [...], "sha256": ...}
            names = data.get("sources")
            if not isinstance(names, list) or data.get("sha256") != _sources_digest(names):
                raise ArchiveFormatError(f"{path} fails its checksum")
            data = names
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise ArchiveFormatError(f"{path} is not a list of source names")
        return data

    def write_sources(self, names: list[str]) -> None:
        body = {"sources": names, "sha256": _sources_digest(names)}
        write_atomic(self.folder / SOURCES_FILE, json.dumps(body).encode())

    def source_id(self, name: str) -> int:
        """The id of a source (file path, "chat"), added on first use."""
        names = self.sources()
        if name in names:
            return names.index(name)
        if len(names) >= 1 << 16:
            raise ArchiveError("an archive holds at most 65,536 sources")
        names.append(name)
        self.write_sources(names)
        return len(names) - 1


def _sources_digest(names: list[str]) -> str:
    return hashlib.sha256(json.dumps(names).encode()).hexdigest()
