"""The real `ikv` CLI in a child process forked from the test process.

A child started with `python -c` spends about 1.3 s before the command starts: Python, the
imports and llama.cpp's first load of the model. A forked child has all of that already and
is still a process of its own: its own pid, file descriptors, locks and exit status, so kill
-9 and faults that kill it work as they do on a user's machine. What the command sees is set
as a fresh process would have it (tests/inprocess.py), and the child leaves with `os._exit`,
so nothing of the test process (pytest, its workers' channels) runs in it.
Tests of how ikv starts (the import order, `python -m`) still exec a new interpreter.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping

from inprocess import _fresh_warning_filters, _read, _text, call_main, fresh_cli_state


def _child(args: tuple[str, ...], env: Mapping[str, str], fds: tuple[int, ...],
           prepare: Callable[[], None] | None) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        # llama.cpp's OpenMP threads do not survive a fork: a child that asks for more than
        # one waits forever for the parent's (seen with `pytest -n 0`, two threads)
        os.environ["IKV_THREADS"] = "1"
        os.environ.update(env)
        sys.argv = ["ikv", *args]
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout, sys.stderr = _text(1), _text(2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _fresh_warning_filters()
        fresh_cli_state()
        from ikv_local import interrupts

        interrupts._wake = None  # its helper thread is not in this process
        if prepare:
            prepare()
        code = call_main()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Child:
    """A forked `ikv *args`, with what `subprocess.Popen` gives the tests that use it.

    `prepare` runs in the child before the command (a test's own setting of a module).
    stdout and stderr go to temporary files, read once it has exited.
    """

    def __init__(self, args: tuple[str, ...] | list[str], env: Mapping[str, str] | None = None,
                 stdin: str = "", prepare: Callable[[], None] | None = None) -> None:
        self.args = tuple(args)
        self.returncode: int | None = None
        self._files = [tempfile.TemporaryFile() for _ in range(3)]  # closed in communicate
        inp = self._files[0]
        inp.write(stdin.encode())
        inp.flush()
        inp.seek(0)
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            _child(self.args, env or {}, tuple(f.fileno() for f in self._files), prepare)

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"ikv {' '.join(self.args)} ran past {timeout} s")
            time.sleep(0.005)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """(stdout, stderr) once it has exited; killed when it runs past `timeout`."""
        try:
            self.wait(timeout)
        except TimeoutError:
            self.kill()
            self.wait()
            raise
        out, err = (_read(f) for f in self._files[1:])
        for f in self._files:
            f.close()
        return out, err


def run(args: tuple[str, ...], env: Mapping[str, str], stdin: str,
        timeout: float = 300) -> tuple[int, str, str]:
    """Exit status (-N when killed by signal N), stdout and stderr of `ikv *args`."""
    child = Child(args, env, stdin)
    out, err = child.communicate(timeout)
    return child.returncode, out, err  # type: ignore[return-value]
