"""Where ikv keeps its files: data under IKV_HOME, derived files under IKV_CACHE."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from ikv_local.errors import IkvError

APP = "ikv"


class HomeError(IkvError):
    """The data folder cannot be one: it, or a folder above it, is a file."""


def data_dir(check: bool = True) -> Path:
    """Sessions and archives: `IKV_HOME`, else the platform's user data dir.

    Checked, unless `check` is false (`ikv doctor` reports it instead): a file in its place
    would otherwise surface as a traceback from whichever write or listing came first.
    """
    env = os.environ.get("IKV_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP))
    if check:
        for at in (path, *path.parents):
            if at.exists():
                if not at.is_dir():
                    name = "IKV_HOME" if env else "the data folder"
                    what = "is a file, not a folder" if at == path else \
                        f"cannot be made: {at} is a file"
                    raise HomeError(f"{name} {path} {what}; point IKV_HOME at a folder")
                break
    return path


def cache_dir() -> Path:
    """Rebuildable files (the assembled demo model): `IKV_CACHE`, else the user cache dir."""
    env = os.environ.get("IKV_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP))


@contextmanager
def using_home(home: str | os.PathLike[str]) -> Iterator[Path]:
    """IKV_HOME pointed at `home` for a while, then back to what it was."""
    old = os.environ.get("IKV_HOME")
    os.environ["IKV_HOME"] = str(home)
    try:
        yield Path(home)
    finally:
        if old is None:
            os.environ.pop("IKV_HOME", None)
        else:
            os.environ["IKV_HOME"] = old


@contextmanager
def temporary_home(prefix: str) -> Iterator[Path]:
    """IKV_HOME pointed at a fresh folder for a while (demos and benchmarks leave nothing)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as home, using_home(home) as path:
        yield path
