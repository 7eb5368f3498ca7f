"""llama.cpp's log, captured instead of sprayed on stderr.

llama.cpp explains its failures (unknown architecture, truncated tensor data, a KV buffer
it could not allocate) and its hyperparameters only in its log. We keep the lines of the
current operation so the engine can turn them into one-line errors and model facts.
Set IKV_LLAMA_LOG=1 to see the log on stderr as well.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp

from ikv_local import interrupts

LEVEL_ERROR = 4  # ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT
LEVEL_CONT = 5

_lines: list[tuple[int, str]] | None = None
_last_level = 0
_echo = os.environ.get("IKV_LLAMA_LOG", "") not in ("", "0")


@interrupts.callback  # a Ctrl-C that lands in here waits until llama.cpp's call returns
def _log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    global _last_level
    if level == LEVEL_CONT:
        level = _last_level
    _last_level = level
    line = text.decode("utf-8", "replace") if text else ""
    if _lines is not None:
        _lines.append((level, line))
    if _echo:
        sys.stderr.write(line)


_on_log = llama_cpp.llama_log_callback(_log)


def install() -> None:
    """Route llama.cpp's log through `_on_log` (the callback object lives as long as the module)."""
    llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))


@contextmanager
def capture() -> Iterator[list[tuple[int, str]]]:
    """Collect (level, text) of every log line emitted inside the block."""
    global _lines
    outer, _lines = _lines, []
    try:
        yield _lines
    finally:
        if outer is not None:
            outer.extend(_lines)
        _lines = outer


def joined(lines: list[tuple[int, str]]) -> list[str]:
    """Whole lines: llama.cpp sometimes writes one line in several calls."""
    return "".join(text for _, text in lines).splitlines()


def first_error(lines: list[tuple[int, str]]) -> str:
    """The first error line: the cause; later ones are callers saying they failed too."""
    errors = "".join(text for level, text in lines if level == LEVEL_ERROR).splitlines()
    errors = [e.strip() for e in errors if e.strip()]
    return errors[0] if errors else ""


install()
