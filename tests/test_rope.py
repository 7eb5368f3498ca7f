import numpy as np
import pytest

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts
from ikv_local.rope import check_supported, unrope


def rope_forward(x, positions, base, scale, n_rot, kind):
    """ggml's rope, written out independently for the test."""
    out = x.copy()
    for i in range(n_rot // 2):
        theta = positions * scale * base ** (-2 * i / n_rot)
        c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
        a, b = (i, i + n_rot // 2) if kind == "neox" else (2 * i, 2 * i + 1)
        x0, x1 = x[..., a], x[..., b]
        out[..., a] = x0 * c - x1 * s
        out[..., b] = x0 * s + x1 * c
    return out


@pytest.mark.parametrize("kind", ["neox", "norm"])
@pytest.mark.parametrize("n_rot", [64, 48])
def test_unrope_inverts_rope(kind, n_rot):
    rng = np.random.default_rng(0)
    layer = LayerFacts(0, 2, 64, 64, False, 10000.0, 0.5, n_rot)
    keys = rng.standard_normal((50, 2, 64)).astype(np.float32)
    positions = rng.integers(0, 2_000_000, 50)
    roped = rope_forward(keys.astype(np.float64), positions, 10000.0, 0.5, n_rot, kind)
    back = unrope(roped.astype(np.float32), positions, layer, kind)
    assert np.abs(back - keys).max() < 2e-4
    # dims past n_rot are untouched, and roping did change the rotated ones
    assert np.array_equal(back[..., n_rot:], keys[..., n_rot:])
    assert np.abs(roped[..., :n_rot] - keys[..., :n_rot]).max() > 0.1


def test_unsupported_rope_is_one_clear_error():
    with pytest.raises(IkvError, match="mrope"):
        check_supported("mrope", "none")
    with pytest.raises(IkvError, match="yarn"):
        check_supported("neox", "yarn")
    check_supported("neox", "linear")
