"""Sizes in bytes as people write and read them; light, so the CLI can import it at once."""

from __future__ import annotations

import re
from fractions import Fraction

from ikv_local.errors import IkvError

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


MAX_SIZE = 1 << 60  # 1 EiB: past any memory, and far inside what llama.cpp's sizes hold


class SizeError(IkvError):
    """A size the user wrote that is not one: a bad parameter, like typer's (exit 2)."""

    exit_code = 2


def parse_size(text: str) -> int:
    """'256MiB', '1.5 GiB', '300MB', '1000000' -> bytes.

    Exact (no float), and at most MAX_SIZE: 400 digits get an answer, not an OverflowError.
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise SizeError(f"not a size: {_shown(text)} (try 256MiB or 1GiB)")
    # digits counted (and decimals cut) first: Python refuses to read an int of 4,300 digits
    whole, _, decimals = m.group(1).partition(".")
    whole = whole.lstrip("0") or "0"
    size = MAX_SIZE + 1 if len(whole) > 30 else \
        int(Fraction(f"{whole}.{decimals[:30] or 0}") * _UNITS[unit])
    if size > MAX_SIZE:
        raise SizeError(f"size too large: {_shown(text)} (at most 1 EiB)")
    return size


def _shown(text: str, width: int = 40) -> str:
    """The text as typed, cut short: a 400-digit size must not fill the error line."""
    if len(text) <= width:
        return repr(text)
    return f"{text[:width]!r}… ({len(text):,} characters)"


def format_size(n: float) -> str:
    """Bytes for people: '128.0 MiB', '1.0 KiB', '512 B'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n}"
