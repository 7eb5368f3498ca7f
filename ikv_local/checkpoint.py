"""A session's two small files, each checked on read and each able to restore the other.

`window.bin` holds the window's bookkeeping and llama.cpp's state of sequence 0, plus a copy
of the session's metadata and source names. `session.json` holds the metadata (people and
`sessions list` read it without a model), plus a copy of the window's bookkeeping without
the KV state: the token ids of the recent part, from which a lost window is decoded again.
Both carry a SHA-256, so a changed digit is caught rather than trusted.

The files' contents are the types in `metadata`, which also holds session.json's formats
and their upgrades; window.bin's format is the magic's last byte.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from ikv_local.errors import IkvError
from ikv_local.files import write_atomic
from ikv_local.metadata import MetadataError, NewerFormat, SessionMeta, WindowHeader

WINDOW_FILE = "window.bin"
META_FILE = "session.json"
WINDOW_MAGIC = b"IKVWIN\x00\x01"


class SessionError(IkvError):
    exit_code = 7


class Damaged(SessionError):
    """A session file fails its check; `ikv sessions repair` can fix it."""


def repair_hint(name: str) -> str:
    return f"run: ikv sessions repair {name}"


# -- window.bin ---------------------------------------------------------------------

def pack_window(header: WindowHeader, state: bytes) -> bytes:
    head = json.dumps(header.to_dict()).encode()
    body = WINDOW_MAGIC + struct.pack("<IQ", len(head), len(state)) + head + state
    return body + hashlib.sha256(body).digest()


def unpack_window(data: bytes, path: Path) -> tuple[WindowHeader, bytes]:
    fixed = len(WINDOW_MAGIC) + 12
    if len(data) < fixed + 32 or data[: len(WINDOW_MAGIC) - 1] != WINDOW_MAGIC[:-1]:
        raise Damaged(f"{path} is not an ikv window checkpoint")
    if data[len(WINDOW_MAGIC) - 1] > WINDOW_MAGIC[-1]:
        raise NewerFormat(f"{path} was written by a newer ikv (window format "
                          f"{data[len(WINDOW_MAGIC) - 1]}); upgrade ikv to open it")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise Damaged(f"{path} fails its checksum")
    n_head, n_state = struct.unpack("<IQ", data[len(WINDOW_MAGIC) : fixed])
    if fixed + n_head + n_state + 32 != len(data):
        raise Damaged(f"{path} has the wrong length")
    try:
        header = WindowHeader.from_dict(json.loads(data[fixed : fixed + n_head]))
    except (ValueError, MetadataError) as exc:
        raise Damaged(f"{path}: {exc}") from None
    return header, data[fixed + n_head : fixed + n_head + n_state]


def read_window(folder: Path) -> tuple[WindowHeader, bytes] | None:
    path = folder / WINDOW_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Damaged(f"cannot read {path}: {exc.strerror}") from None
    return unpack_window(data, path)


def write_window(folder: Path, header: WindowHeader, state: bytes) -> None:
    write_atomic(folder / WINDOW_FILE, pack_window(header, state))


# -- session.json -------------------------------------------------------------------

def _digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_meta_file(path: Path) -> SessionMeta:
    """session.json, checked and brought up to this ikv's format (a format-1 file has no
    checksum to check)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise Damaged(f"unreadable {path}: {exc}") from None
    if isinstance(data, dict) and data.get("format", 1) != 1 and data.get("sha256") != _digest(data):
        raise Damaged(f"{path} fails its checksum")
    try:
        return SessionMeta.from_dict(data)
    except MetadataError as exc:
        raise Damaged(f"{path}: {exc}") from None
    except NewerFormat as exc:
        raise NewerFormat(f"{path}: {exc}") from None


def file_format(path: Path) -> int:
    """The format a session.json was written in (before any upgrade); 0 when unreadable."""
    try:
        version = json.loads(path.read_text()).get("format", 1)
    except (OSError, ValueError, AttributeError):
        return 0
    return version if isinstance(version, int) else 0


def write_meta_file(path: Path, meta: SessionMeta) -> None:
    data = meta.to_dict()
    data["sha256"] = _digest(data)
    write_atomic(path, json.dumps(data, indent=1).encode())
