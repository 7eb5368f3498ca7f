import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikv_local.errors import IkvError
from ikv_local.record import (
    FIXED_HEADER_SIZE,
    MAGIC,
    RECORD_DTYPE,
    RECORD_SIZE,
    ArchiveFormatError,
    ArchiveMismatchError,
    Flag,
    Header,
    RecordError,
    Role,
    check_compatible,
    checksums,
    encode,
    from_bytes,
    header_size,
    pack_header,
    unpack_header,
    valid,
)

META = {
    "model_fingerprint": {"arch": "gemma3", "name": "gemma-3-270m", "sha": "abcd1234" * 8},
    "sketch": {"bits": 512, "seed": 7},
    "created_ms": 1_700_000_000_000,
}


def random_fields(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "position": rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
        "time_ms": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True),
        "token": rng.integers(0, 2**32 - 1, n, dtype=np.uint32, endpoint=True),
        "segment": rng.integers(0, 2**32 - 1, n, dtype=np.uint32, endpoint=True),
        "source": rng.integers(0, 2**16 - 1, n, dtype=np.uint16, endpoint=True),
        "role": rng.integers(0, 3, n, endpoint=True),
        "flags": rng.integers(0, 7, n, endpoint=True),
        "sketch": rng.integers(0, 255, (n, 64), dtype=np.uint8, endpoint=True),
    }


def reference_checksum(record: bytes) -> int:
    """The documented algorithm, one word at a time."""
    h = 0xCBF29CE484222325
    for (w,) in struct.iter_unpack("<I", record[:100]):
        h = ((h ^ w) * 0x100000001B3) % 2**64
    return (h ^ (h >> 32)) & 0xFFFFFFFF


def one_record() -> np.ndarray:
    return encode(**{k: v[:1] for k, v in random_fields(1, seed=3).items()})


def test_dtype_layout_is_the_documented_one():
    assert RECORD_DTYPE.itemsize == RECORD_SIZE == 104
    offsets = {name: RECORD_DTYPE.fields[name][1] for name in RECORD_DTYPE.names}
    assert offsets == {
        "position": 0, "time_ms": 8, "token": 16, "segment": 20, "source": 24,
        "role": 26, "flags": 27, "sketch": 28, "reserved": 92, "checksum": 100,
    }  # fmt: skip
    rec = encode(
        position=0x0102030405060708, time_ms=-2, token=0xA1B2C3D4, segment=5, source=0x0102,
        role=Role.ASSISTANT, flags=Flag.SINK, sketch=np.arange(64, dtype=np.uint8)[None],
    )  # fmt: skip
    raw = rec.tobytes()
    assert raw[0:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert raw[8:16] == b"\xfe" + b"\xff" * 7
    assert raw[16:20] == bytes([0xD4, 0xC3, 0xB2, 0xA1])
    assert raw[24:28] == bytes([2, 1, 3, 4])
    assert raw[28:92] == bytes(range(64)) and raw[92:100] == bytes(8)


def test_round_trip_of_all_fields():
    fields = random_fields(3000)
    recs, left = from_bytes(encode(**fields).tobytes())
    assert left == 0 and len(recs) == 3000
    for name, values in fields.items():
        assert np.array_equal(recs[name], values), name
    assert not recs["reserved"].any()
    assert valid(recs).all()


def test_checksum_matches_the_documented_algorithm():
    recs = encode(**random_fields(20, seed=1))
    raw = recs.tobytes()
    for i, got in enumerate(checksums(recs)):
        rec = raw[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]
        assert got == reference_checksum(rec) == struct.unpack_from("<I", rec, 100)[0]
    assert checksums(np.zeros(1, RECORD_DTYPE))[0] == reference_checksum(bytes(RECORD_SIZE))


def test_records_at_unaligned_offsets_and_strided_views_check_the_same():
    recs = encode(**random_fields(50, seed=2))
    shifted, left = from_bytes(b"x" + recs.tobytes() + b"yz", offset=1)
    assert left == 2 and valid(shifted).all()
    assert np.array_equal(checksums(recs[::3]), recs["checksum"][::3])


def test_scalars_broadcast_and_empty_input_is_fine():
    recs = encode(
        position=np.arange(4), time_ms=7, token=1, segment=2, source=3,
        role=Role.USER, flags=Flag.LINE_START | Flag.SENTENCE_START,
        sketch=np.zeros((4, 64), np.uint8),
    )  # fmt: skip
    assert list(recs["position"]) == [0, 1, 2, 3] and set(recs["role"]) == {2}
    assert valid(recs).all()
    empty = encode(**{k: v[:0] for k, v in random_fields(0).items()})
    assert len(empty) == 0 and len(valid(empty)) == 0


def test_every_flipped_byte_is_detected():
    rec = one_record()
    flips = np.repeat(rec, RECORD_SIZE * 255)
    raw = flips.view(np.uint8).reshape(RECORD_SIZE, 255, RECORD_SIZE)
    positions = np.arange(RECORD_SIZE)
    raw[positions, :, positions] ^= np.arange(1, 256, dtype=np.uint8)
    assert valid(rec)[0]
    assert not valid(flips).any()


def test_all_zero_record_is_invalid():
    assert not valid(np.zeros(3, RECORD_DTYPE)).any()
    assert not valid(from_bytes(bytes(10 * RECORD_SIZE))[0]).any()


@pytest.mark.parametrize(
    "field, value",
    [("reserved", 1), ("flags", 8), ("flags", 0x80), ("role", 4), ("role", 255)],
)
def test_unknown_bits_are_invalid_even_with_a_fresh_checksum(field, value):
    rec = one_record()
    if field == "reserved":
        rec["reserved"][0, 5] = value
    else:
        rec[field] = value
    rec["checksum"] = checksums(rec)
    assert not valid(rec)[0]


def test_truncated_buffers_give_whole_records_and_the_leftover():
    raw = encode(**random_fields(5)).tobytes()
    for cut in range(len(raw) + 1):
        recs, left = from_bytes(raw[:cut])
        assert (len(recs), left) == divmod(cut, RECORD_SIZE)
        assert valid(recs).all()
    with pytest.raises(RecordError):
        from_bytes(raw, offset=len(raw) + 1)


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"sketch": np.zeros((1, 63), np.uint8)}, "sketch must be uint8"),
        ({"sketch": np.zeros((1, 64), np.int16)}, "sketch must be uint8"),
        ({"token": -1}, "token holds -1"),
        ({"source": 65536}, "source holds 65536"),
        ({"position": 2**64}, "position must be integers"),
        ({"position": -1}, "position holds -1"),
        ({"time_ms": np.uint64(2**63)}, "time_ms holds"),
        ({"segment": 1.5}, "segment must be integers"),
        ({"token": [1, 2]}, "token has shape (2,)"),
        ({"role": 4}, "role 4 is not 0..3"),
        ({"flags": 8}, "flags use bits outside"),
    ],
)
def test_encode_refuses_bad_input(change, phrase):
    fields = {k: v[:1] for k, v in random_fields(1).items()} | change
    with pytest.raises(RecordError) as err:
        encode(**fields)
    assert phrase in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, IkvError)


def test_valid_refuses_other_dtypes():
    with pytest.raises(RecordError):
        valid(np.zeros((2, 104), np.uint8))


def test_header_round_trip_and_page_alignment():
    head = pack_header(META)
    assert len(head) == 4096 and head[:8] == MAGIC
    assert unpack_header(head) == Header(1, 104, 4096, META)
    assert header_size(head[:FIXED_HEADER_SIZE]) == 4096
    big = {"sources": ["/some/path/file%d.txt" % i for i in range(400)]}
    head = pack_header(big)
    assert len(head) == 12288 and header_size(head) == 12288
    assert unpack_header(head).meta == big
    assert unpack_header(pack_header({})).meta == {}


def raw_header(
    body: bytes = b'{"a":1}',
    *,
    magic: bytes = MAGIC,
    version: int = 1,
    record_size: int = 104,
    size: int = 4096,
    json_len: int | None = None,
    crc: int | None = None,
) -> bytes:
    json_len = len(body) if json_len is None else json_len
    prefix = struct.pack("<8sIIII", magic, version, record_size, size, json_len)
    crc = zlib.crc32(body, zlib.crc32(prefix)) if crc is None else crc
    fixed = prefix + struct.pack("<I", crc)
    return (fixed + body).ljust(size, b"\0")


@pytest.mark.parametrize(
    "buf, phrase",
    [
        (raw_header()[:FIXED_HEADER_SIZE - 1], "truncated header"),
        (b"", "truncated header"),
        (b"GGUF" + bytes(100), "not an ikv archive"),
        (b"hello", "not an ikv archive"),
        (raw_header(version=2), "archive format version 2; this ikv reads version 1"),
        (raw_header(record_size=96), "archive records are 96 bytes"),
        (raw_header(size=4000), "header size 4000 is invalid"),
        (raw_header(size=0), "header size 0 is invalid"),
        (raw_header(json_len=5000), "header size 4096 is invalid"),
        (raw_header(size=8192, json_len=5000)[:4096], "metadata ends at byte 5028"),
        (raw_header(crc=123), "archive header is corrupted"),
        (raw_header().replace(b'"a"', b'"b"'), "archive header is corrupted"),
        (raw_header(b"{not json"), "not valid JSON"),
        (raw_header(b'{"a":"\xff"}'), "not valid JSON"),
        (raw_header(b"[1,2]"), "not a JSON object"),
        (raw_header(b"null"), "not a JSON object"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_header_error_is_one_clear_line(buf, phrase):
    with pytest.raises(ArchiveFormatError) as err:
        unpack_header(buf)
    msg = str(err.value)
    assert phrase in msg and "\n" not in msg
    assert err.value.exit_code == 5


def test_raw_header_helper_builds_a_valid_header():
    assert unpack_header(raw_header()).meta == {"a": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_parse_as_a_header(buf):
    with pytest.raises(ArchiveFormatError):
        unpack_header(buf)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_a_good_prefix_never_parse_as_a_header(rest):
    with pytest.raises(ArchiveFormatError):
        unpack_header(MAGIC + struct.pack("<II", 1, RECORD_SIZE) + rest)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_any_json_meta_round_trips(meta):
    head = pack_header(meta)
    assert len(head) % 4096 == 0
    assert unpack_header(head).meta == meta


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE))
def test_random_record_bytes_are_invalid(blob):
    assert not valid(from_bytes(blob)[0])[0]


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE))
def test_random_records_with_plausible_fields_are_caught_by_the_checksum(blob):
    rec = from_bytes(bytearray(blob))[0]
    rec["reserved"] = 0
    rec["flags"] &= 7
    rec["role"] &= 3
    assert not valid(rec)[0]


def test_many_random_records_are_invalid():
    rng = np.random.default_rng(11)
    recs = from_bytes(rng.integers(0, 256, 200_000 * RECORD_SIZE, dtype=np.uint8))[0].copy()
    assert not valid(recs).any()
    recs["reserved"] = 0
    recs["flags"] &= 7
    recs["role"] &= 3
    assert not valid(recs).any()


def test_compatible_meta_passes_and_other_keys_are_ignored():
    assert check_compatible(META, dict(META, created_ms=5)) is None  # a mismatch raises


def test_a_different_model_is_named_in_one_line():
    other = dict(META, model_fingerprint={"arch": "llama", "name": "llama", "sha": "ef56" * 16})
    with pytest.raises(ArchiveMismatchError) as err:
        check_compatible(META, other)
    msg = str(err.value)
    assert "\n" not in msg and err.value.exit_code == 5
    assert msg.startswith("archive was made with model_fingerprint")
    assert "gemma3" in msg and "llama" in msg and "abcd1234" in msg and "ef56" in msg
    assert "abcd1234" * 8 not in msg


def test_a_missing_or_different_sketch_is_named():
    with pytest.raises(ArchiveMismatchError, match="sketch seed=7, not seed=8"):
        check_compatible(META, dict(META, sketch={"bits": 512, "seed": 8}))
    with pytest.raises(ArchiveMismatchError, match=r"sketch \(none\)"):
        check_compatible({"model_fingerprint": META["model_fingerprint"]}, META)
    with pytest.raises(ArchiveMismatchError, match="version"):
        check_compatible({"version": 1}, {"version": 2}, keys=("version",))
