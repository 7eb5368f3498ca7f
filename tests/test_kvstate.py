"""llama.cpp's state buffer parser, on a real buffer from the demo model and damaged copies of it."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikv_local.kvstate import StateFormatError, cache_groups, hadamard, parse_seq_state
from ikv_local.sequences import SCRATCH_SEQ, WINDOW_SEQ

TEXT = (
    "Alice met Bob at the old station. They talked about the weather, the trains and "
    "the pass key, which was 7351. Then they walked home along the river. "
) * 3


def test_hadamard_is_its_own_inverse():
    for n in (64, 128, 256):
        h = hadamard(n)
        assert np.allclose(h @ h, np.eye(n), atol=1e-5)


# -- the parser against damaged buffers ---------------------------------------


@pytest.fixture(scope="module")
def sample_state(engine):
    engine.clear()
    engine.decode(engine.tokenize(TEXT, add_bos=True)[:24], 0)
    engine.seq_cp(WINDOW_SEQ, SCRATCH_SEQ)
    buf = engine.state_get(SCRATCH_SEQ)
    engine.clear()
    return buf, cache_groups(engine.facts)


def test_parser_accepts_the_real_buffer(sample_state):
    buf, groups = sample_state
    state = parse_seq_state(buf, groups)
    assert len(state.caches[0].positions) == 24


def test_parser_refuses_bad_magic_truncation_and_trailing_bytes(sample_state):
    buf, groups = sample_state
    with pytest.raises(StateFormatError, match="not a llama.cpp sequence state"):
        parse_seq_state(b"\0\0\0\0" + buf[4:], groups)
    with pytest.raises(StateFormatError, match="ends early"):
        parse_seq_state(buf[:-1], groups)
    with pytest.raises(StateFormatError, match="trailing"):
        parse_seq_state(buf + b"\0", groups)
    wrong_layers = [groups[0][:-1], groups[1]]
    with pytest.raises(StateFormatError, match="layers"):
        parse_seq_state(buf, wrong_layers)
    other_seq = buf[:4] + struct.pack("<i", 0) + buf[8:]
    with pytest.raises(StateFormatError, match="sequence 0"):
        parse_seq_state(other_seq, groups)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parser_never_crashes_or_accepts_damage(sample_state, data):
    buf, groups = sample_state
    kind = data.draw(st.sampled_from(["random", "truncate", "flip-header"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=4096))
    elif kind == "truncate":
        blob = buf[: data.draw(st.integers(0, len(buf) - 1))]
    else:
        # damage one of the structural words before the first layer's rows
        at = data.draw(st.integers(0, 12 * 24 + 40))
        blob = bytearray(buf)
        blob[at] ^= data.draw(st.integers(1, 255))
        blob = bytes(blob)
    try:
        state = parse_seq_state(blob, groups)
    except StateFormatError:
        return
    # a damaged buffer that still parses may only differ in a cell position
    assert kind == "flip-header"
    assert len(state.caches[0].positions) == 24
