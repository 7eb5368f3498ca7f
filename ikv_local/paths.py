"""Where ikv keeps its files: data under IKV_HOME, derived files under IKV_CACHE."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

APP = "ikv"


def data_dir() -> Path:
    """Sessions and archives: `IKV_HOME`, else the platform's user data dir."""
    env = os.environ.get("IKV_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Rebuildable files (the assembled demo model): `IKV_CACHE`, else the user cache dir."""
    env = os.environ.get("IKV_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP))


@contextmanager
def temporary_home(prefix: str) -> Iterator[Path]:
    """IKV_HOME pointed at a fresh folder for a while (demos and benchmarks leave nothing)."""
    old = os.environ.get("IKV_HOME")
    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        os.environ["IKV_HOME"] = home
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("IKV_HOME", None)
            else:
                os.environ["IKV_HOME"] = old
