"""Read cells out of llama.cpp's KV cache as float32 keys (and values).

The only public way to see cached K/V is the sequence state API. To read positions [p0, p1)
we tag those cells with a scratch sequence (`seq_cp`; with a unified cache no data moves),
serialise that sequence with `llama_state_seq_get_data` (copied to host even when the cache
lives on a GPU), drop the scratch tag, and parse the buffer.

The buffer's format and its parser live in `kvstate.py`.
"""

from __future__ import annotations

import numpy as np

from ikv_local.engine import Engine
from ikv_local.kvstate import CacheCells, LayerRows, SeqState, cache_groups, parse_seq_state
from ikv_local.sequences import SCRATCH_SEQ, WINDOW_SEQ


def read_cells(
    engine: Engine, p0: int, p1: int, *, seq: int = WINDOW_SEQ, values: bool = False
) -> SeqState:
    """Cells of `seq` at positions [p0, p1), via the scratch sequence.

    llama.cpp leaves sliding-window cells that the scratch sequence's last position has slid
    past out of the state, so longer ranges are read in windows and joined.
    """
    step = engine.facts.n_swa if engine.facts.swa_layers else max(p1 - p0, 1)
    parts = [_read_range(engine, a, min(a + step, p1), seq, values) for a in range(p0, p1, step)]
    if len(parts) == 1:
        return parts[0]
    caches = []
    for i in range(len(parts[0].caches)):
        chunk = [p.caches[i] for p in parts]
        layers = {
            idx: LayerRows(
                idx,
                np.concatenate([c.layers[idx].k for c in chunk if idx in c.layers]),
                None if not values else np.concatenate([c.layers[idx].v for c in chunk if idx in c.layers]),
            )
            for idx in {i for c in chunk for i in c.layers}
        }
        caches.append(CacheCells(np.concatenate([c.positions for c in chunk]), layers))
    return SeqState(parts[0].seq_id, caches)


def _read_range(engine: Engine, p0: int, p1: int, seq: int, values: bool) -> SeqState:
    engine.seq_rm(SCRATCH_SEQ)
    engine.seq_cp(seq, SCRATCH_SEQ, p0, p1)
    try:
        buf = engine.state_get(SCRATCH_SEQ)
    finally:
        engine.seq_rm(SCRATCH_SEQ)
    return parse_seq_state(
        buf,
        cache_groups(engine.facts),
        values=values,
        k_rotation=engine.k_rotation,
        v_rotation=engine.v_rotation,
    )
