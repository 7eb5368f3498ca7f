"""File a block of the KV cache into the archive: readout -> sketch -> records -> append.

The window manager decides which cells age and what they were (token ids, absolute
positions, role, source); this module turns those cells into records. KV cells hold no token
ids, so the caller passes them, aligned with the cells' positions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ikv_local.archive import Archive
from ikv_local.engine import Engine
from ikv_local.errors import EngineError
from ikv_local.readout import read_cells
from ikv_local.record import Flag, Role, encode
from ikv_local.sequences import WINDOW_SEQ
from ikv_local.sketch import SketchSpec, encode as encode_sketch, unit_keys, vectors

SENTENCE_ENDS = (b".", b"!", b"?", b"\xe3\x80\x82")


@dataclass(frozen=True)
class Origin:
    """Where a block of tokens came from."""

    role: Role
    source: int  # Archive.source_id(...)
    segment: int  # chat turn or document segment
    time_ms: int | None = None  # now, when None


def boundary_flags(engine: Engine, tokens: list[int], previous: int | None = None) -> np.ndarray:
    """LINE_START / SENTENCE_START per token, from the pieces before it."""
    flags = np.zeros(len(tokens), np.uint8)
    before = engine.piece(previous) if previous is not None else b"\n"
    for i, tok in enumerate(tokens):
        tail = before.rstrip(b" \t")
        if before.endswith(b"\n"):
            flags[i] |= Flag.LINE_START | Flag.SENTENCE_START
        elif tail.endswith(SENTENCE_ENDS):
            flags[i] |= Flag.SENTENCE_START
        before = engine.piece(tok)
    return flags


def sketch_cells(engine: Engine, spec: SketchSpec, p0: int, n: int, *, seq: int = WINDOW_SEQ) -> np.ndarray:
    """Sketches [n, 64] of cells [p0, p0 + n) of `seq`.

    Sliding-window layers reuse a cell once it has slid out of every window, so a block is
    sketched while it is recent and filed later.
    """
    state = read_cells(engine, p0, p0 + n, seq=seq)
    positions, keys = unit_keys(state, engine.facts, spec.units)
    if not np.array_equal(positions, np.arange(p0, p0 + n)):
        raise EngineError(f"cells [{p0}, {p0 + n}) are not all in the KV cache")
    return encode_sketch(vectors(keys, spec), spec)


def file_records(
    engine: Engine,
    archive: Archive,
    tokens: list[int],
    sketches: np.ndarray,
    first_position: int,
    origin: Origin,
    *,
    previous_token: int | None = None,
    sync: bool = True,
) -> np.ndarray:
    """Append records for `tokens` (absolute positions from `first_position`); returns them."""
    records = encode(
        position=np.arange(first_position, first_position + len(tokens), dtype=np.uint64),
        time_ms=origin.time_ms if origin.time_ms is not None else int(time.time() * 1000),
        token=np.asarray(tokens, dtype=np.uint32),
        segment=origin.segment,
        source=origin.source,
        role=int(origin.role),
        flags=boundary_flags(engine, tokens, previous_token),
        sketch=sketches,
    )
    archive.append(records, sync=sync)
    return records


def file_cells(
    engine: Engine,
    archive: Archive,
    spec: SketchSpec,
    p0: int,
    tokens: list[int],
    first_position: int,
    origin: Origin,
    *,
    previous_token: int | None = None,
    seq: int = WINDOW_SEQ,
    sync: bool = True,
) -> np.ndarray:
    """Archive cells [p0, p0 + len(tokens)) of `seq` now; returns the records appended."""
    sketches = sketch_cells(engine, spec, p0, len(tokens), seq=seq)
    return file_records(engine, archive, tokens, sketches, first_position, origin,
                        previous_token=previous_token, sync=sync)
