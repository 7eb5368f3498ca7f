"""Every write ikv makes to a session goes through here: owner-only, fsynced, crash-safe.

One place for the write sites means one place to turn an OSError (disk full, I/O error,
read-only filesystem) into a one-line `StorageError`, to clean up a temporary file that a
failed write leaves, and to inject faults in tests: `IKV_FAULT=KIND:N` makes the N-th write
call of the process fail half-way through (`enospc`, `eio`: half the bytes are written, as
when a disk fills up), die before it (`kill`) or die half-way through it (`torn`); `IKV_FAULT=count:FILE` appends one line per write site to FILE. With the
variable unset the hook is one comparison per write call (writes are per block, not per
token).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ikv_local.errors import IkvError

T = TypeVar("T")
FILE_MODE = 0o600
DIR_MODE = 0o700


class StorageError(IkvError):
    """A write failed: what failed and where; committed data is as it was."""

    exit_code = 5


_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EIO: "an I/O error", errno.EROFS: "the filesystem is read-only",
        errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


def storage_error(exc: OSError, path: Path | str, doing: str) -> StorageError:
    why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
    return StorageError(f"cannot {doing} {path}: {why}; what was saved before is intact")


# -- the fault hook ----------------------------------------------------------------

_FAULT = os.environ.get("IKV_FAULT") or None
_calls = 0


def _at(site: str, path: Path, tearable: bool = False) -> str | None:
    """Count this write call; the fault to apply to it, if any."""
    global _calls
    if _FAULT is None:
        return None
    _calls += 1
    kind, _, arg = _FAULT.partition(":")
    if kind == "count":
        with open(arg, "a") as f:
            f.write(f"{_calls} {site} {path.name}\n")
        return None
    if not arg.isdigit() or int(arg) != _calls:
        return None
    if kind == "kill" or (kind == "torn" and not tearable):
        _die()
    if kind in ("enospc", "eio") and not tearable:
        _fail(kind, path)
    return kind  # the caller writes half, then dies ("torn") or fails ("enospc", "eio")


def _fail(kind: str, path: Path) -> None:
    code = errno.ENOSPC if kind == "enospc" else errno.EIO
    raise OSError(code, os.strerror(code), str(path))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- writes -------------------------------------------------------------------------

def private_dir(path: Path) -> Path:
    """Make `path` and any missing parents owner-only (0700), whatever the umask."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise StorageError(f"{p} is a file, not a folder; ikv keeps its data in a folder there")
    for d in reversed(missing):
        try:
            _at("mkdir", d)
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)
        except FileExistsError:
            if not d.is_dir():
                raise StorageError(f"{d} is a file, not a folder") from None
        except OSError as exc:
            raise storage_error(exc, d, "make the folder") from None
    return path


def unused(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`… when taken: names stamped to the second meet within one."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _temporary(path: Path) -> Path:
    """Where a replacement for `path` is written first: hidden, beside it, one per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` so a crash leaves either the old or the new file, whole.

    A failed write removes its temporary file, so a full disk leaves nothing behind that
    would keep later writes failing.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        fault = _at("replace", path, tearable=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data[: len(data) // 2] if fault else data)
            if fault == "torn":
                _die()
            if fault:  # the disk filled up (or failed) part-way through
                _fail(fault, path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise storage_error(exc, path, "write") from None
    fsync_dir(path.parent)


@contextmanager
def replaced(path: Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """A temporary name beside `path` for another library to write (usearch's save, the demo
    model's assembler); it replaces `path` when the block ends, as `write_atomic` would.

    OSErrors pass through: wrap the block in `guarded` for one-line StorageErrors.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def append(path: Path, data: bytes, *, sync: bool = True, create: bool = False) -> None:
    """Append `data` in whole; a failure leaves at most a torn tail past the last checkpoint."""
    path = Path(path)
    try:
        fault = _at("append", path, tearable=True)
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
        fd = os.open(path, flags, FILE_MODE)
        try:
            if fault:
                _write_all(fd, data[: max(1, len(data) // 2)])
                os.fsync(fd)
                if fault == "torn":
                    _die()
                _fail(fault, path)
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path, "append to") from None


def rename(path: Path, target: Path) -> None:
    """Move a file or folder (a session renamed): atomic on one filesystem."""
    try:
        _at("rename", Path(path))
        os.rename(path, target)
    except OSError as exc:
        raise storage_error(exc, path, "rename") from None
    fsync_dir(Path(target).parent)


def copy(path: Path, target: Path) -> None:
    """A new owner-only copy of a file, fsynced (a fork's files, before it is renamed into
    place: a failure leaves the hidden copy, which the caller removes)."""
    try:
        fault = _at("copy", Path(target))
        if fault:
            _fail(fault, Path(target))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            with open(path, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                done = 0
                while done < size:  # in the kernel; a reflink where the filesystem has them
                    try:
                        n = os.copy_file_range(src.fileno(), fd, size - done)
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                             errno.EINVAL):
                            raise
                        n = _copy_by_hand(src.fileno(), fd)
                    if n == 0:
                        break
                    done += n
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, target, "copy to") from None


def _copy_by_hand(src: int, dst: int) -> int:
    done = 0
    while chunk := os.read(src, 1 << 20):
        _write_all(dst, chunk)
        done += len(chunk)
    return done


def truncate(path: Path, size: int) -> None:
    try:
        _at("truncate", path)
        with open(path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())
    except OSError as exc:
        raise storage_error(exc, path, "cut") from None


@contextmanager
def one_at_a_time(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on `path` (made if missing).

    For derived files worth a minute of work (the demo model, a model's measurements): two
    processes starting on a new model measure once, the second reading what the first wrote.
    """
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise storage_error(exc, path, "lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def made_once(lock: Path, ready: Callable[[], T | None], make: Callable[[], T]) -> T:
    """What `ready()` finds; else, holding `lock`, what it finds now (another process may have
    made it while this one waited) or what `make()` makes."""
    got = ready()
    if got is not None:
        return got
    with one_at_a_time(lock):
        got = ready()
        return got if got is not None else make()


def guarded(path: Path, doing: str):  # type: ignore[no-untyped-def]
    """A context for writes made by other libraries (usearch): fault hook and one-line errors."""
    return _Guard(path, doing)


class _Guard:
    def __init__(self, path: Path, doing: str) -> None:
        self.path, self.doing = Path(path), doing

    def __enter__(self) -> None:
        try:
            _at(self.doing, self.path)
        except OSError as exc:
            raise storage_error(exc, self.path, self.doing) from None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        if isinstance(exc, OSError):
            raise storage_error(exc, self.path, self.doing) from None
        if isinstance(exc, RuntimeError):  # usearch reports a failed save this way
            raise StorageError(f"cannot {self.doing} {self.path}: {exc}") from None
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
