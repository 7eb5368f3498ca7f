import numpy as np

from ikv_local.sketch import SKETCH_BYTES, SketchSpec, encode, hamming, vectors


def spec(dims=(64, 32), seed=3) -> SketchSpec:
    means = tuple(tuple(float(i) / 10 for i in range(d)) for d in dims)
    return SketchSpec(tuple((i, 0) for i in range(len(dims))), dims, means, seed, "test")


def test_sketch_is_64_bytes_of_sign_bits_and_deterministic():
    rng = np.random.default_rng(0)
    s = spec()
    keys = [rng.standard_normal((10, d)).astype(np.float32) for d in s.head_dims]
    bits = encode(vectors(keys, s), s)
    assert bits.shape == (10, SKETCH_BYTES) and bits.dtype == np.uint8
    assert np.array_equal(bits, encode(vectors(keys, spec()), spec()))
    assert not np.array_equal(bits, encode(vectors(keys, spec(seed=4)), spec(seed=4)))


def test_hamming_tracks_angle():
    rng = np.random.default_rng(1)
    s = spec()
    base = [rng.standard_normal((1, d)).astype(np.float32) for d in s.head_dims]
    near = [b + 0.1 * rng.standard_normal(b.shape).astype(np.float32) for b in base]
    far = [rng.standard_normal((1, d)).astype(np.float32) for d in s.head_dims]
    b, n, f = (encode(vectors(k, s), s) for k in (base, near, far))
    assert hamming(b, b)[0, 0] == 0
    assert hamming(b, n)[0, 0] < hamming(b, f)[0, 0]
    assert hamming(b, np.bitwise_not(b))[0, 0] == 512


def test_spec_round_trips_through_json_form():
    s = spec()
    again = SketchSpec.from_dict(s.to_dict())
    assert again == s and again.key() == s.key()
    assert np.array_equal(again.projection, s.projection)
