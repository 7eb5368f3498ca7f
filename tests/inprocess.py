"""The real `ikv` CLI run inside the test process, as a child process would run it.

A child costs about 1.3 s before the command starts (Python, the imports, llama.cpp's first
backend load); here the command starts at once. What a fresh process would give the command
is given again each time: argv, stdin, its own file descriptors 1 and 2 (so whatever llama.cpp
prints in C is caught too, as a pipe would catch it), the environment, Python's default warning
filters with no warning shown yet, the signal handlers, and the CLI's module state (the last
stop, the fault hook). An exception that escapes is printed as Python would print it, exit 1.
Tests about processes themselves (kill -9, signals, two writers) still start children.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def _descriptor(fd: int) -> Iterator[tempfile._TemporaryFileWrapper[bytes]]:
    """Point file descriptor `fd` at a temporary file for the block."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(fd)
        os.dup2(f.fileno(), fd)
        try:
            yield f  # type: ignore[misc]
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def _text(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            write_through=True)


def _fresh_warning_filters() -> None:
    """Python's own defaults; setting them also forgets which warnings were shown."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)


def fresh_cli_state() -> None:
    """The CLI's module state as a new process reads it from the environment."""
    from ikv_local import files, interrupts, llama_log

    files._FAULT, files._calls = os.environ.get("IKV_FAULT") or None, 0
    interrupts._last = None
    llama_log._echo = os.environ.get("IKV_LLAMA_LOG", "") not in ("", "0")


def call_main() -> int:
    """`ikv`'s exit code; an exception that escapes is printed as Python would, exit 1."""
    from ikv_local import cli

    try:
        cli.main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # what would reach the user as a traceback
        traceback.print_exc()
        return 1
    return 0


def run(args: tuple[str, ...], env: Mapping[str, str], stdin: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `ikv *args`."""
    from ikv_local import files, interrupts, llama_log

    saved_env = dict(os.environ)
    saved_streams = sys.argv, sys.stdin, sys.stdout, sys.stderr
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_state = files._FAULT, files._calls, interrupts._last, llama_log._echo
    os.environ.update(env)
    fresh_cli_state()
    sys.stdout.flush()
    sys.stderr.flush()
    with _descriptor(1) as out, _descriptor(2) as err, warnings.catch_warnings():
        _fresh_warning_filters()
        sys.argv = ["ikv", *args]
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        sys.stdout, sys.stderr = _text(1), _text(2)
        try:
            code = call_main()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.argv, sys.stdin, sys.stdout, sys.stderr = saved_streams
            for signum, handler in saved_handlers.items():
                signal.signal(signum, handler)
            files._FAULT, files._calls, interrupts._last, llama_log._echo = saved_state
            os.environ.clear()
            os.environ.update(saved_env)
        return code, _read(out), _read(err)


def _read(f: tempfile._TemporaryFileWrapper[bytes]) -> str:
    """As `subprocess.run(text=True)` reads a pipe: newlines of every kind become "\\n"."""
    f.seek(0)
    return f.read().decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
