"""Where ikv keeps its files: data under IKV_HOME, derived files under IKV_CACHE."""

from __future__ import annotations

import os
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
