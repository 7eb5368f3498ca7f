import math

import numpy as np
import pytest

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts, RopeFacts
from ikv_local.rope import angles, check_supported, unrope, unsupported, yarn_corr_dims

F = np.float32


def ggml_cache(
    p: int,
    n_rot: int,
    base: float,
    scale: float,
    factors,
    ext: float,
    n_ctx_orig: int,
    beta_fast: float,
    beta_slow: float,
) -> list[float]:
    """ggml_rope_cache_init + rope_yarn (ggml-cpu/ops.cpp) for one position, as the C loop."""
    theta_scale = F(base) ** F(-2.0 / n_rot)
    n_ctx_orig = n_ctx_orig or 4096  # unused without YaRN
    low = max(
        0.0,
        math.floor(n_rot * math.log(n_ctx_orig / (beta_fast * 2 * math.pi)) / (2 * math.log(base))),
    )
    high = min(
        n_rot - 1.0,
        math.ceil(n_rot * math.log(n_ctx_orig / (beta_slow * 2 * math.pi)) / (2 * math.log(base))),
    )
    theta = F(p)
    out = []
    for i0 in range(0, n_rot, 2):
        ff = F(factors[i0 // 2]) if factors is not None else F(1)
        extrap = F(theta / ff)
        interp = F(F(scale) * extrap)
        t = interp
        if ext != 0:
            y = F((i0 // 2 - F(low)) / F(max(0.001, high - low)))
            mix = F((F(1) - min(F(1), max(F(0), y))) * F(ext))
            t = F(interp * (F(1) - mix) + extrap * mix)
        out.append(float(t))
        theta = F(theta * theta_scale)
    return out


def rope_forward(x, positions, thetas, n_rot, kind):
    out = x.astype(np.float64, copy=True)
    for row, th in enumerate(thetas):
        for i, t in enumerate(th):
            a, b = (i, i + n_rot // 2) if kind == "neox" else (2 * i, 2 * i + 1)
            x0, x1 = x[row, :, a].astype(np.float64), x[row, :, b].astype(np.float64)
            out[row, :, a] = x0 * math.cos(t) - x1 * math.sin(t)
            out[row, :, b] = x0 * math.sin(t) + x1 * math.cos(t)
    return out


def llama3_factors(n_rot: int, base: float = 500000.0) -> tuple[float, ...]:
    """convert_hf_to_gguf.py's Llama 3.1 rope_freqs (factor 8, low 1, high 4, original 8192)."""
    factor, low_ff, high_ff, old = 8.0, 1.0, 4.0, 8192
    out = []
    for i in range(n_rot // 2):
        freq = 1.0 / base ** (2 * i / n_rot)
        wavelen = 2 * math.pi / freq
        if wavelen < old / high_ff:
            out.append(1.0)
        elif wavelen > old / low_ff:
            out.append(factor)
        else:
            smooth = (old / wavelen - low_ff) / (high_ff - low_ff)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return tuple(out)


CASES = {
    "plain": (10000.0, 1.0, RopeFacts()),
    "linear": (1000000.0, 0.125, RopeFacts()),
    "llama3": (
        500000.0,
        1.0,
        RopeFacts(freq_factors=llama3_factors(64), factors_from="rope_freqs.weight"),
    ),
    "longrope": (
        10000.0,
        1.0,
        RopeFacts(freq_factors=tuple(1.0 + 1.5 * i for i in range(32)), n_ctx_orig=4096),
    ),
    "yarn": (150000.0, 1 / 32, RopeFacts(ext_factor=1.0, n_ctx_orig=4096)),
}


@pytest.mark.parametrize("kind", ["neox", "norm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_unrope_inverts_ggml_rope(kind, case):
    base, scale, rope = CASES[case]
    n_rot = 64
    layer = LayerFacts(0, 2, 80, 80, False, base, scale, n_rot)
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((40, 2, 80)).astype(np.float32)
    positions = np.concatenate([[0, 1, 100_000, 131_071], rng.integers(0, 200_000, 36)])
    thetas = [
        ggml_cache(
            int(p),
            n_rot,
            base,
            scale,
            rope.freq_factors,
            rope.ext_factor,
            rope.n_ctx_orig,
            rope.beta_fast,
            rope.beta_slow,
        )
        for p in positions
    ]
    assert np.array_equal(angles(positions, layer, rope), np.asarray(thetas, dtype=np.float32))
    roped = rope_forward(keys, positions, thetas, n_rot, kind)
    back = unrope(roped.astype(np.float32), positions, layer, kind, rope)
    assert np.abs(back - keys).max() < 1e-4
    # dims past n_rot are untouched, and roping did change the rotated ones
    assert np.array_equal(back[..., n_rot:], keys[..., n_rot:])
    assert np.abs(roped[..., :n_rot] - keys[..., :n_rot]).max() > 0.1


def test_ignoring_llama3_factors_turns_over_a_quarter_of_the_pairs_by_more_than_half_a_radian():
    base, scale, rope = CASES["llama3"]
    layer = LayerFacts(0, 8, 128, 128, False, base, scale, 128)
    rope = RopeFacts(freq_factors=llama3_factors(128))
    right = angles(np.array([10_000]), layer, rope)[0]
    wrong = angles(np.array([10_000]), layer)[0]
    err = np.abs(np.angle(np.exp(1j * (right.astype(np.float64) - wrong))))
    assert (err > 0.5).mean() > 0.25  # 18 of 64 pairs at position 10,000


def test_yarn_ramps_between_interpolation_and_extrapolation():
    layer = LayerFacts(0, 1, 64, 64, False, 150000.0, 1 / 32, 64)
    low, high = yarn_corr_dims(64, 4096, 150000.0, 32.0, 1.0)
    assert 0 < low < high < 32
    yarn = angles(np.array([1000]), layer, RopeFacts(ext_factor=1.0, n_ctx_orig=4096))[0]
    linear = angles(np.array([1000]), layer)[0]
    plain = angles(np.array([1000]), LayerFacts(0, 1, 64, 64, False, 150000.0, 1.0, 64))[0]
    assert np.allclose(yarn[: int(low)], plain[: int(low)])  # fast pairs extrapolate
    assert np.allclose(yarn[int(high) + 1 :], linear[int(high) + 1 :])  # slow pairs interpolate


def test_unsupported_rope_is_one_clear_error():
    with pytest.raises(IkvError, match="mrope.*vision-language"):
        check_supported("mrope", "none")
    with pytest.raises(IkvError, match="scaling 'su'"):
        check_supported("neox", "su")
    for scaling in ("none", "linear", "yarn", "longrope"):
        assert unsupported("neox", scaling) is None
    assert "\n" not in unsupported("vision", "none")
