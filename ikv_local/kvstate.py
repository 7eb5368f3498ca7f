"""llama.cpp's sequence state buffer, parsed into float32 keys (and values) per layer.

The format is llama.cpp's, version-less and private, so the parser checks everything it can
(magic, sequence id, stream and cell counts, ggml types, row sizes, the exact end of the
buffer) and refuses anything else loudly. Layout, from `llama_context::state_seq_get_data`
and `llama_kv_cache::state_write` in the vendored llama.cpp:

    u32 magic 0xaf143cd8, i32 seq_id, then per KV cache (iSWA models: non-SWA, then SWA):
      u32 n_stream; per stream: u32 cell_count; if cell_count:
        per cell: i32 pos, u32 n_seq_id, n_seq_id x i32 seq id
        u32 v_trans, u32 n_layer
        per layer: i32 k type, u64 k row bytes, cell_count rows
        v_trans == 0: per layer: i32 v type, u64 v row bytes, cell_count rows
        v_trans == 1: per layer: i32 v type, u32 element bytes, u32 n_embd_v, rows by dimension

Quantized caches are stored Walsh-Hadamard rotated (blocks of `k_rotation` / `v_rotation`
values); the rotation is its own inverse, so it is applied once more on the way out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts, ModelFacts

STATE_MAGIC = 0xAF143CD8
_KNOWN_TYPES = {t.value for t in GGMLQuantizationType}


class StateFormatError(IkvError):
    """llama.cpp's state buffer is not what this ikv understands."""

    exit_code = 6


@dataclass
class LayerRows:
    layer: int
    k: np.ndarray  # float32 [n_cells, n_head_kv, head_dim_k]
    v: np.ndarray | None  # float32 [n_cells, n_head_kv, head_dim_v]


@dataclass
class CacheCells:
    positions: np.ndarray  # int32 [n_cells], ascending
    layers: dict[int, LayerRows]


@dataclass
class SeqState:
    seq_id: int
    caches: list[CacheCells]

    def layer(self, index: int) -> tuple[np.ndarray, LayerRows]:
        """Positions and rows of one model layer, from whichever cache holds it."""
        for c in self.caches:
            if index in c.layers:
                return c.positions, c.layers[index]
        raise KeyError(index)


def cache_groups(facts: ModelFacts) -> list[list[LayerFacts]]:
    """Layers of each KV cache in the order llama.cpp writes them."""
    if facts.swa_layers:
        return [[lay for lay in facts.layers if not lay.swa], [lay for lay in facts.layers if lay.swa]]
    return [list(facts.layers)]


@cache
def hadamard(n: int) -> np.ndarray:
    """Orthonormal Sylvester Walsh-Hadamard matrix, as llama.cpp's ggml_gen_hadamard builds it."""
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return (h / np.sqrt(n)).astype(np.float32)


class _Cursor:
    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        self.at = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.at + n > len(self.buf):
            raise StateFormatError(
                f"KV state ends early: {what} needs {n} bytes at byte {self.at} of {len(self.buf)}"
            )
        out = self.buf[self.at : self.at + n]
        self.at += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _rows_to_float(raw: memoryview, ggml_type: int, n_rows: int, width: int, what: str) -> np.ndarray:
    if ggml_type not in _KNOWN_TYPES:
        raise StateFormatError(f"{what}: unknown ggml type {ggml_type}")
    qtype = GGMLQuantizationType(ggml_type)
    block, size = GGML_QUANT_SIZES[qtype]
    if width % block or len(raw) != n_rows * width // block * size:
        raise StateFormatError(f"{what}: {len(raw)} bytes do not hold {n_rows} {qtype.name} rows of {width}")
    data = np.frombuffer(raw, dtype=np.uint8)
    if qtype == GGMLQuantizationType.F32:
        return data.view(np.float32).reshape(n_rows, width).copy()
    if qtype == GGMLQuantizationType.F16:
        return data.view(np.float16).reshape(n_rows, width).astype(np.float32)
    if qtype == GGMLQuantizationType.BF16:
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(n_rows, width)
    return dequantize(data.reshape(n_rows, -1), qtype).astype(np.float32, copy=False)


def _unrotate(x: np.ndarray, block: int) -> np.ndarray:
    if not block:
        return x
    n = x.shape[0]
    return (x.reshape(n, -1, block) @ hadamard(block)).reshape(x.shape)


def _read_cache(
    cur: _Cursor, seq_id: int, group: list[LayerFacts], values: bool, k_rot: int, v_rot: int
) -> CacheCells:
    (n_stream,) = cur.unpack("<I", "stream count")
    if n_stream != 1:
        raise StateFormatError(f"KV state has {n_stream} streams; ikv needs a unified cache (1)")
    (n_cells,) = cur.unpack("<I", "cell count")
    empty = CacheCells(np.zeros(0, dtype=np.int32), {})
    if n_cells == 0:
        return empty
    # every cell is (i32 pos, u32 n_seq_id = 1, i32 seq_id): one sequence was asked for
    cells = np.frombuffer(cur.take(12 * n_cells, "cell headers"), dtype="<i4").reshape(n_cells, 3)
    if (cells[:, 1] != 1).any() or (cells[:, 2] != seq_id).any():
        bad = int(np.flatnonzero((cells[:, 1] != 1) | (cells[:, 2] != seq_id))[0])
        raise StateFormatError(f"cell {bad} is not tagged with sequence {seq_id} alone")
    positions = cells[:, 0].copy()
    v_trans, n_layer = cur.unpack("<II", "layer header")
    if v_trans not in (0, 1) or n_layer != len(group):
        raise StateFormatError(
            f"KV state has {n_layer} layers (v_trans {v_trans}); the model's cache has {len(group)}"
        )
    rows: dict[int, LayerRows] = {}
    for lay in group:
        k_type, k_row = cur.unpack("<iQ", f"layer {lay.index} key header")
        raw = cur.take(k_row * n_cells, f"layer {lay.index} keys")
        k = _rows_to_float(raw, k_type, n_cells, lay.k_width, f"layer {lay.index} keys")
        k = _unrotate(k, k_rot).reshape(n_cells, lay.n_head_kv, lay.head_dim_k)
        rows[lay.index] = LayerRows(lay.index, k, None)
    for lay in group:
        name = f"layer {lay.index} values"
        if v_trans:
            v_type, el, width = cur.unpack("<iII", name + " header")
            if width != lay.v_width:
                raise StateFormatError(f"{name}: width {width}, expected {lay.v_width}")
            raw = cur.take(el * width * n_cells, name)
            if not values:
                continue
            v = _rows_to_float(raw, v_type, width, n_cells, name).T.copy()
        else:
            v_type, v_row = cur.unpack("<iQ", name + " header")
            raw = cur.take(v_row * n_cells, name)
            if not values:
                continue
            v = _rows_to_float(raw, v_type, n_cells, lay.v_width, name)
        v = _unrotate(v, v_rot).reshape(n_cells, lay.n_head_kv, lay.head_dim_v)
        rows[lay.index].v = v
    # cells sit in ring-buffer order; hand them out by position
    order = np.argsort(positions, kind="stable")
    if (order != np.arange(n_cells)).any():
        positions = positions[order]
        for r in rows.values():
            r.k = r.k[order]
            r.v = None if r.v is None else r.v[order]
    return CacheCells(positions, rows)


def parse_seq_state(
    buf: bytes | memoryview,
    groups: list[list[LayerFacts]],
    *,
    values: bool = False,
    k_rotation: int = 0,
    v_rotation: int = 0,
) -> SeqState:
    """Parse one sequence's state buffer; anything unexpected raises StateFormatError."""
    cur = _Cursor(buf)
    magic, seq_id = cur.unpack("<Ii", "state header")
    if magic != STATE_MAGIC:
        raise StateFormatError(f"not a llama.cpp sequence state (magic {magic:#010x})")
    caches = [_read_cache(cur, seq_id, g, values, k_rotation, v_rotation) for g in groups]
    if cur.at != len(cur.buf):
        raise StateFormatError(f"KV state has {len(cur.buf) - cur.at} unexpected trailing bytes")
    return SeqState(seq_id, caches)
