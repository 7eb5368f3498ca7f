"""Sizes as people write and read them (pure units)."""

from __future__ import annotations

import pytest

from ikv_local.errors import IkvError
from ikv_local.sizes import MAX_SIZE, SizeError, format_size, parse_size

MIB = 2**20


def test_sizes_are_parsed_in_binary_and_decimal_units():
    assert parse_size("256MiB") == 256 * MIB
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size("300MB") == 300_000_000
    assert parse_size("4096") == 4096
    for bad in ("", "lots", "12 parsecs", "-5MiB"):
        with pytest.raises(IkvError, match="not a size"):
            parse_size(bad)


def test_sizes_are_exact_and_bounded():
    assert parse_size("1." + "5" * 5000 + "KiB") == 1592  # decimals past 30 do not count
    assert parse_size("0" * 5000 + "5MiB") == 5 * MIB
    assert parse_size(str(MAX_SIZE)) == MAX_SIZE
    for huge in ("9" * 400, "9" * 5000 + ".5", str(MAX_SIZE + 1), "1" * 20 + "GiB"):
        with pytest.raises(SizeError, match="size too large") as err:
            parse_size(huge)
        assert err.value.exit_code == 2 and len(str(err.value)) < 120


def test_sizes_are_written_in_the_largest_unit_below_1024():
    assert format_size(512) == "512 B"
    assert format_size(1024) == "1.0 KiB"
    assert format_size(128 * MIB) == "128.0 MiB"
    assert format_size(3 * 2**30) == "3.0 GiB"
    assert parse_size(format_size(64 * MIB).replace(" ", "")) == 64 * MIB
