"""The archive's on-disk codec: a page-aligned header, then fixed 104-byte records.

A record is all the archive keeps of a token: where it was, where it came from, and a 512-bit
sign sketch of its key, so the search index can always be rebuilt from the records alone.
Every record carries its own checksum, so a torn write or a flipped bit is found per token
and never silently recalled. Layout and rationale: docs/record-format.md.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

import numpy as np

from ikv_local.errors import IkvError

RECORD_SIZE = 104
SKETCH_BYTES = 64
RESERVED_BYTES = 8
FORMAT_VERSION = 1
MAGIC = b"IKVARC\x00\x01"
PAGE = 4096
_FIXED = struct.Struct("<8sIIIII")  # magic, version, record size, header size, JSON length, CRC
FIXED_HEADER_SIZE = _FIXED.size
_CRC_START = FIXED_HEADER_SIZE - 4  # the CRC covers every fixed field before it, then the JSON
MAX_HEADER_SIZE = 16 << 20

RECORD_DTYPE = np.dtype(
    {
        "names": [
            "position", "time_ms", "token", "segment", "source",
            "role", "flags", "sketch", "reserved", "checksum",
        ],
        "formats": [
            "<u8", "<i8", "<u4", "<u4", "<u2",
            "u1", "u1", ("u1", (SKETCH_BYTES,)), ("u1", (RESERVED_BYTES,)), "<u4",
        ],
        "offsets": [0, 8, 16, 20, 24, 26, 27, 28, 92, 100],
        "itemsize": RECORD_SIZE,
    }
)  # fmt: skip
assert RECORD_DTYPE.itemsize == RECORD_SIZE
assert sum(RECORD_DTYPE[name].itemsize for name in RECORD_DTYPE.names) == RECORD_SIZE

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_CHECKED_WORDS = 25  # bytes 0..99: everything but the checksum itself
_CHUNK = 1 << 15  # records per pass: keeps the working set in cache


class Role(IntEnum):
    DOCUMENT = 0
    SYSTEM = 1
    USER = 2
    ASSISTANT = 3


class Flag(IntFlag):
    LINE_START = 1
    SENTENCE_START = 2
    SINK = 4


_KNOWN_FLAGS = int(Flag.LINE_START | Flag.SENTENCE_START | Flag.SINK)
_UNKNOWN_FLAGS = np.uint8(0xFF & ~_KNOWN_FLAGS)
_MAX_ROLE = int(max(Role))


class ArchiveError(IkvError):
    """An archive cannot be written or read as asked."""

    exit_code = 5


class RecordError(ArchiveError):
    """Values that do not fit a record (a caller's bug or bad upstream data)."""


class ArchiveFormatError(ArchiveError):
    """The file is not an archive this ikv can read (wrong file, other version, corrupted)."""


class ArchiveMismatchError(ArchiveError):
    """The archive is sound but was made for another model or sketch."""


@dataclass(frozen=True)
class Header:
    version: int
    record_size: int
    header_size: int
    meta: dict[str, Any]


def _field(name: str, value: Any, n: int, dtype: np.dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise RecordError(f"record field {name} must be integers, got {arr.dtype}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise RecordError(f"record field {name} has shape {arr.shape}; expected a scalar or ({n},)")
    if arr.size:
        info = np.iinfo(dtype)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise RecordError(
                f"record field {name} holds {lo if lo < info.min else hi}, "
                f"outside {info.min}..{info.max}"
            )
    return arr


def encode(
    *,
    position: Any,
    time_ms: Any,
    token: Any,
    segment: Any,
    source: Any,
    role: Any,
    flags: Any,
    sketch: np.ndarray,
) -> np.ndarray:
    """Records for len(sketch) tokens, checksummed; scalar fields apply to every token."""
    sketch = np.asarray(sketch)
    if sketch.dtype != np.uint8 or sketch.ndim != 2 or sketch.shape[1] != SKETCH_BYTES:
        raise RecordError(
            f"sketch must be uint8 of shape (n, {SKETCH_BYTES}), got {sketch.dtype} {sketch.shape}"
        )
    n = sketch.shape[0]
    out = np.zeros(n, RECORD_DTYPE)
    fields = {
        "position": position,
        "time_ms": time_ms,
        "token": token,
        "segment": segment,
        "source": source,
        "role": role,
        "flags": flags,
    }
    for name, value in fields.items():
        out[name] = _field(name, value, n, RECORD_DTYPE[name])
    if n and int(out["role"].max()) > _MAX_ROLE:
        raise RecordError(f"record role {int(out['role'].max())} is not 0..{_MAX_ROLE}")
    if np.any(out["flags"] & _UNKNOWN_FLAGS):
        raise RecordError(f"record flags use bits outside {_KNOWN_FLAGS:#04x}")
    out["sketch"] = sketch
    out["checksum"] = checksums(out)
    return out


def _check_dtype(records: np.ndarray) -> None:
    if records.dtype != RECORD_DTYPE or records.ndim != 1:
        raise RecordError(f"expected a 1-D array of records, got {records.dtype} {records.shape}")


def checksums(records: np.ndarray) -> np.ndarray:
    """FNV-1a over 32-bit words of bytes 0..99, folded to 32 bits.

    The 64-bit state is a bijection of each word given the others (xor, then multiply by an
    odd prime), so any change confined to one word always changes it; folding to 32 bits lets
    a change through with probability about 2**-32. Words, not bytes, make it 25 vector
    passes; the starting offset makes an all-zero record fail.
    """
    _check_dtype(records)
    out = np.empty(len(records), np.uint32)
    for start in range(0, len(records), _CHUNK):
        block = np.ascontiguousarray(records[start : start + _CHUNK])
        words = block.view(np.uint8).reshape(-1, RECORD_SIZE).view("<u4")
        h = np.full(len(block), _FNV_OFFSET, np.uint64)
        for i in range(_CHECKED_WORDS):
            h ^= words[:, i]
            h *= _FNV_PRIME
        out[start : start + len(block)] = (h ^ (h >> np.uint64(32))).astype(np.uint32)
    return out


def valid(records: np.ndarray) -> np.ndarray:
    """Per record: checksum matches, reserved bytes zero, only known flags and roles."""
    _check_dtype(records)
    return (
        (checksums(records) == records["checksum"])
        & ~records["reserved"].any(axis=1)
        & (records["flags"] & _UNKNOWN_FLAGS == 0)
        & (records["role"] <= _MAX_ROLE)
    )


def from_bytes(buf: Any, offset: int = 0) -> tuple[np.ndarray, int]:
    """A zero-copy view of the whole records in buf[offset:], and how many bytes trail them.

    Trailing bytes are a record torn by a crash mid-append; the caller decides to drop them.
    """
    size = memoryview(buf).nbytes - offset
    if offset < 0 or size < 0:
        raise RecordError(f"offset {offset} is outside a buffer of {size + offset} bytes")
    count, left = divmod(size, RECORD_SIZE)
    return np.frombuffer(buf, RECORD_DTYPE, count=count, offset=offset), left


def pack_header(meta: dict[str, Any]) -> bytes:
    """The header bytes for `meta`, zero-padded to whole pages so records start page-aligned."""
    if not isinstance(meta, dict):
        raise TypeError(f"archive meta must be a dict, got {type(meta).__name__}")
    data = json.dumps(
        meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    size = -(-(FIXED_HEADER_SIZE + len(data)) // PAGE) * PAGE
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, RECORD_SIZE, size, len(data), 0)
    crc = zlib.crc32(data, zlib.crc32(fixed[:_CRC_START]))
    fixed = fixed[:_CRC_START] + struct.pack("<I", crc)
    return (fixed + data).ljust(size, b"\0")


def header_size(fixed: bytes) -> int:
    """Bytes to read for the whole header, from its first FIXED_HEADER_SIZE bytes."""
    return _unpack_fixed(fixed)[0]


def _unpack_fixed(buf: bytes) -> tuple[int, int, int]:
    buf = bytes(buf[:FIXED_HEADER_SIZE])
    if not MAGIC.startswith(buf[: len(MAGIC)]):
        raise ArchiveFormatError("not an ikv archive (bad magic)")
    if len(buf) < FIXED_HEADER_SIZE:
        raise ArchiveFormatError(
            f"truncated header: {len(buf)} bytes, an archive header has {FIXED_HEADER_SIZE} or more"
        )
    _, version, record_size, size, json_len, crc = _FIXED.unpack(buf)
    if version != FORMAT_VERSION:
        raise ArchiveFormatError(
            f"archive format version {version}; this ikv reads version {FORMAT_VERSION}"
        )
    if record_size != RECORD_SIZE:
        raise ArchiveFormatError(
            f"archive records are {record_size} bytes; this ikv reads {RECORD_SIZE}-byte records"
        )
    if size % PAGE or size < FIXED_HEADER_SIZE + json_len or size > MAX_HEADER_SIZE:
        raise ArchiveFormatError(
            f"archive header size {size} is invalid: not a multiple of {PAGE} "
            f"or outside {FIXED_HEADER_SIZE + json_len}..{MAX_HEADER_SIZE} bytes"
        )
    return size, json_len, crc


def unpack_header(buf: bytes) -> Header:
    """Parse and check a header; needs its bytes up to the end of the JSON, no further."""
    size, json_len, crc = _unpack_fixed(buf)
    end = FIXED_HEADER_SIZE + json_len
    if len(buf) < end:
        raise ArchiveFormatError(
            f"truncated header: its metadata ends at byte {end} but only {len(buf)} bytes were read"
        )
    data = bytes(buf[FIXED_HEADER_SIZE:end])
    if zlib.crc32(data, zlib.crc32(bytes(buf[:_CRC_START]))) != crc:
        raise ArchiveFormatError("archive header is corrupted (metadata checksum mismatch)")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ArchiveFormatError("archive header metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ArchiveFormatError("archive header metadata is not a JSON object")
    return Header(FORMAT_VERSION, RECORD_SIZE, size, meta)


def _short(value: Any, limit: int = 60) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if len(value) <= 20 else value[:12] + "…"
    if isinstance(value, dict):
        text = " ".join(f"{k}={_short(v)}" for k, v in sorted(value.items()))
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_compatible(
    meta: dict[str, Any],
    expected: dict[str, Any],
    keys: tuple[str, ...] = ("model_fingerprint", "sketch"),
) -> None:
    """Refuse an archive whose sketches would not be comparable with ours."""
    for key in keys:
        # compare as stored: JSON turns tuples into lists
        have, want = meta.get(key), json.loads(json.dumps(expected.get(key)))
        if have == want:
            continue
        if isinstance(have, dict) and isinstance(want, dict):
            differ = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
            have = {k: have.get(k) for k in differ}
            want = {k: want.get(k) for k in differ}
        raise ArchiveMismatchError(
            f"archive was made with {key} {_short(have)}, not {_short(want)}"
        )
