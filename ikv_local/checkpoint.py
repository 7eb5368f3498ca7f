"""A session's two small files, each checked on read and each able to restore the other.

`window.bin` holds the window's bookkeeping and llama.cpp's state of sequence 0, plus a copy
of the session's metadata and source names. `session.json` holds the metadata (people and
`sessions list` read it without a model), plus a copy of the window's bookkeeping without
the KV state: the token ids of the recent part, from which a lost window is decoded again.
Both carry a SHA-256, so a changed digit is caught rather than trusted.

session.json formats: 1 (no checksum, no window copy: read, upgraded on the next save),
2 (this one).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from ikv_local.errors import IkvError
from ikv_local.files import write_atomic

WINDOW_FILE = "window.bin"
META_FILE = "session.json"
WINDOW_MAGIC = b"IKVWIN\x00\x01"
FORMAT = 2


class SessionError(IkvError):
    exit_code = 7


class Damaged(SessionError):
    """A session file fails its check; `ikv sessions repair` can fix it."""


def repair_hint(name: str) -> str:
    return f"run: ikv sessions repair {name}"


# -- window.bin ---------------------------------------------------------------------

def pack_window(meta: dict[str, Any], state: bytes) -> bytes:
    head = json.dumps(meta).encode()
    body = WINDOW_MAGIC + struct.pack("<IQ", len(head), len(state)) + head + state
    return body + hashlib.sha256(body).digest()


def unpack_window(data: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    fixed = len(WINDOW_MAGIC) + 12
    if len(data) < fixed + 32 or data[: len(WINDOW_MAGIC)] != WINDOW_MAGIC:
        raise Damaged(f"{path} is not an ikv window checkpoint")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise Damaged(f"{path} fails its checksum")
    n_head, n_state = struct.unpack("<IQ", data[len(WINDOW_MAGIC) : fixed])
    if fixed + n_head + n_state + 32 != len(data):
        raise Damaged(f"{path} has the wrong length")
    meta = json.loads(data[fixed : fixed + n_head])
    return meta, data[fixed + n_head : fixed + n_head + n_state]


def read_window(folder: Path) -> tuple[dict[str, Any], bytes] | None:
    path = folder / WINDOW_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Damaged(f"cannot read {path}: {exc.strerror}") from None
    return unpack_window(data, path)


def write_window(folder: Path, meta: dict[str, Any], state: bytes) -> None:
    write_atomic(folder / WINDOW_FILE, pack_window(meta, state))


# -- session.json -------------------------------------------------------------------

def _digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_meta_file(path: Path) -> dict[str, Any]:
    """session.json, checked; a format-1 file (no checksum) is taken as it is."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise Damaged(f"unreadable {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise Damaged(f"{path} is not a session's metadata")
    if int(meta.get("format", 1)) >= 2 and meta.get("sha256") != _digest(meta):
        raise Damaged(f"{path} fails its checksum")
    for key, kind in (("model", dict), ("n_ctx", int), ("documents", list)):
        if not isinstance(meta.get(key), kind):
            raise Damaged(f"{path} lacks {key!r}")
    return meta


def write_meta_file(path: Path, meta: dict[str, Any]) -> None:
    meta = {**meta, "format": FORMAT}
    meta["sha256"] = _digest(meta)
    write_atomic(path, json.dumps(meta, indent=1).encode())


def meta_copy(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata as window.bin keeps it (without its own copy of the window)."""
    return {k: v for k, v in meta.items() if k not in ("window", "sha256")}


def window_copy(wmeta: dict[str, Any]) -> dict[str, Any]:
    """The window's bookkeeping as session.json keeps it (sketches are taken again)."""
    return {k: v for k, v in wmeta.items() if k not in ("sketches", "session", "sources")}
