"""Ctrl-C and SIGTERM as a clean stop: one line, exit 128 + the signal, never lost.

Python runs signal handlers in the main thread between bytecodes, and that includes the
bytecodes of llama.cpp's log callback (`llama_log`), which runs inside a llama.cpp call. An
exception raised there is printed and dropped by ctypes ("Exception ignored on calling ctypes
callback function") and the work goes on: Python's own KeyboardInterrupt was lost that way in
2 ingests of 7. A try/except inside the callback cannot keep it either, since the handler may
run on the callback's very first bytecode. So `install`'s handler raises only outside
callbacks; inside one it asks a helper thread to trip the signal again a moment later, until
it lands after the llama.cpp call has returned. Inside `held()` (a checkpoint being written)
the stop waits for the end of the block, so a checkpoint is written whole or not at all.

Light on purpose: the CLI installs it before anything heavy is imported.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

RETRY_SECONDS = 0.01

_callbacks: set[CodeType] = set()
_last: Stopped | None = None
_deferred = 0  # a signal that landed in a callback and waits to be tripped again
_held = 0  # depth of `held()` blocks
_pending = 0  # a signal that came inside `held()`
_wake: tuple[int, int] | None = None  # a pipe: the handler wakes the helper thread through it


class Stopped(KeyboardInterrupt):
    """A stop asked for by a signal; still a KeyboardInterrupt, so code that catches that
    (a chat's prompt, a library caller) keeps working.

    `kept` is what the session holds for sure: its tokens up to the last checkpoint, set by
    whoever knows (ingest, chat) on the way out.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum
        self.kept: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        what = "stopped" if self.signum == signal.SIGINT else \
            f"stopped by {signal.Signals(self.signum).name}"
        if self.kept is None:
            return what
        return f"{what}; {self.kept:,} tokens kept up to the last checkpoint"


def callback(func: F) -> F:
    """Mark `func` as run by C code through ctypes: no exception may be raised inside it."""
    _callbacks.add(func.__code__)
    return func


def _in_callback(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code in _callbacks:
            return True
        frame = frame.f_back
    return False


def _retry_loop(fd: int) -> None:
    global _deferred
    while True:
        os.read(fd, 1)
        time.sleep(RETRY_SECONDS)  # by then the callback has most likely returned to C
        signum, _deferred = _deferred, 0
        if signum:
            _thread.interrupt_main(signum)  # trips it: the main thread runs `_handle` again


def _handle(signum: int, frame: FrameType | None) -> None:
    global _deferred, _pending
    if _in_callback(frame) and _wake is not None:
        if not _deferred:
            _deferred = signum
            os.write(_wake[1], b"!")  # async-signal-safe, takes no lock
        return
    _deferred = 0  # delivered now; a retry still on its way must not stop the cleanup too
    if _held:
        _pending = _pending or signum
        return
    _stop(signum)


def _stop(signum: int) -> None:
    global _last
    _last = Stopped(signum)
    raise _last


@contextmanager
def held() -> Iterator[None]:
    """Hold a stop until the block is done (a checkpoint: written whole or not at all).

    If the block fails, its error goes on and the held stop is dropped: the process is
    leaving either way. Outside the main thread (the TUI's workers) it holds nothing, since
    signals are handled in the main thread only.
    """
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():  # signals go to main only
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        signum = 0 if _held else _pending
        if not _held:
            _pending = 0
    if signum:
        _stop(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM in the main thread (call it from there, once)."""
    global _wake
    if _wake is None:
        _wake = os.pipe()
        threading.Thread(target=_retry_loop, args=(_wake[0],), name="ikv-signal-retry",
                         daemon=True).start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handle)


def last_stop() -> Stopped | None:
    """The last stop raised: typer turns any KeyboardInterrupt into exit code 130 and drops
    the exception, so the CLI finds the signal and the kept count here."""
    return _last


def note_kept(exc: BaseException, kept: int) -> None:
    """Record on a stop what the session holds up to its last checkpoint."""
    if isinstance(exc, Stopped):
        exc.kept = kept
