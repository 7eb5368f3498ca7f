"""The storage layers load without llama.cpp, so they can be read, repaired and tested alone.

Checked in a fresh interpreter: in this process conftest's fixtures have long loaded the engine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STORAGE = ("record", "archive", "index", "sketch", "kvstate", "sequences")
ENGINE_SIDE = ("llama_cpp", "ikv_local.engine", "ikv_local.readout")


def test_the_storage_layers_import_without_the_engine():
    code = (
        "import sys\n"
        f"import {', '.join('ikv_local.' + m for m in STORAGE)}\n"
        f"print(' '.join(m for m in {ENGINE_SIDE!r} if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"importing the storage layers loaded {run.stdout.strip()}"
