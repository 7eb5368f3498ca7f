"""A session on disk: metadata, the archive and its index, and the hot window's saved state.

<data dir>/sessions/NAME/
    session.json   model path and fingerprint, context, settings, documents
    window.bin     the window's bookkeeping and llama.cpp's state of sequence 0, one
                   checksummed file, replaced atomically (a checkpoint)
    archive/       records, sources, index
    .lock          flock: one writer, or any number of readers

The archive is appended as the window ages; a checkpoint records how many records it had.
Records past the last checkpoint (an ingest that was interrupted) are cut on the next
writable open, so the window and the archive always describe one stream of tokens.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikv_local.archive import Archive, write_atomic
from ikv_local.calibrate import sketch_spec
from ikv_local.support import check as check_memory
from ikv_local.engine import Engine, EngineConfig
from ikv_local.errors import IkvError, ModelError
from ikv_local.fingerprint import model_fingerprint
from ikv_local.history import History
from ikv_local.index import SketchIndex
from ikv_local.kvcost import bytes_per_token
from ikv_local.model_file import resolve_model
from ikv_local.paths import data_dir
from ikv_local.recall import Heat
from ikv_local.sketch import SketchSpec
from ikv_local.window import N_SEQ, Layout, Window, WindowTooSmall

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WINDOW_MAGIC = b"IKVWIN\x00\x01"
FORMAT = 1


class SessionError(IkvError):
    exit_code = 7


class SessionNotFound(SessionError):
    pass


class SessionMismatch(SessionError):
    pass


class SessionBusy(SessionError):
    pass


def sessions_dir() -> Path:
    return data_dir() / "sessions"


def new_session_name() -> str:
    """chat-YYYYMMDD-HHMMSS, with a suffix when that one exists."""
    base = time.strftime("chat-%Y%m%d-%H%M%S")
    name, n = base, 1
    while (sessions_dir() / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise SessionError(
            f"session names are plain names (letters, digits, '.', '_', '-'; up to 64): {name!r}"
        )
    return name


@dataclass(frozen=True)
class OpenOptions:
    model: str | None = None  # GGUF path; the session's own model when None
    n_ctx: int = 2048  # for a new session; an existing one keeps its own
    n_threads: int | None = None
    n_gpu_layers: int = 0
    writable: bool = True  # False: turns are thrown away, the archive is only read
    create: bool = False
    system: str | None = None  # a system prompt for the sink; None keeps the session's own
    type_k: str = "f16"  # KV cache types for a new session; an existing one keeps its own
    type_v: str = "f16"
    slot: int | None = None  # recall slot of a new session; None: Layout.plan's default


def _pack_window(meta: dict[str, Any], state: bytes) -> bytes:
    head = json.dumps(meta).encode()
    body = WINDOW_MAGIC + struct.pack("<IQ", len(head), len(state)) + head + state
    return body + hashlib.sha256(body).digest()


def _unpack_window(data: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    fixed = len(WINDOW_MAGIC) + 12
    if len(data) < fixed + 32 or data[: len(WINDOW_MAGIC)] != WINDOW_MAGIC:
        raise SessionError(f"{path} is not an ikv window checkpoint")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise SessionError(f"{path} fails its checksum; the session's window cannot be restored")
    n_head, n_state = struct.unpack("<IQ", data[len(WINDOW_MAGIC) : fixed])
    if fixed + n_head + n_state + 32 != len(data):
        raise SessionError(f"{path} has the wrong length")
    meta = json.loads(data[fixed : fixed + n_head])
    return meta, data[fixed + n_head : fixed + n_head + n_state]


class Session:
    """An open session: engine, window, archive and index, bound to one model."""

    def __init__(self, name: str, options: OpenOptions = OpenOptions()) -> None:
        self.name = check_name(name)
        self.folder = sessions_dir() / name
        self.options = options
        self.engine: Engine | None = None
        self._lock_fd: int | None = None
        meta_path = self.folder / "session.json"
        exists = meta_path.is_file()
        if not exists and not options.create:
            raise SessionNotFound(
                f"no session named {name!r}; make one with: ikv ingest FILE --session {name}"
            )
        if exists:
            try:
                self.meta: dict[str, Any] = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise SessionError(f"unreadable {meta_path}: {exc}") from None
        created = not exists
        try:
            self._lock(exclusive=options.writable)
            self._load(exists)
        except BaseException:
            self.close()
            if created and not (self.folder / "session.json").exists():
                shutil.rmtree(self.folder, ignore_errors=True)
            raise

    # -- opening -----------------------------------------------------------------

    def _lock(self, exclusive: bool) -> None:
        self._lock_fd = hold_lock(self.folder, self.name, exclusive)

    def _model_path(self, exists: bool) -> Path:
        if self.options.model is not None or not exists:
            return resolve_model(self.options.model)
        path = Path(self.meta["model"]["path"])
        if not path.is_file():
            raise ModelError(
                f"session {self.name!r} was made with {path}, which is gone; "
                "pass the same model with --model"
            )
        return path

    def _load(self, exists: bool) -> None:
        opts = self.options
        n_ctx = int(self.meta["n_ctx"]) if exists else opts.n_ctx
        kv = self.meta.get("kv", {}) if exists else {"type_k": opts.type_k, "type_v": opts.type_v}
        type_k, type_v = kv.get("type_k", "f16"), kv.get("type_v", "f16")
        path = self._model_path(exists)
        self.engine = Engine(path, EngineConfig(n_ctx=n_ctx, n_seq_max=N_SEQ,
                                                n_threads=opts.n_threads,
                                                n_gpu_layers=opts.n_gpu_layers,
                                                type_k=type_k, type_v=type_v,
                                                flash_attn=True if type_v != "f16" else None))
        check_memory(self.engine.facts)
        fp = model_fingerprint(self.engine)
        if exists and self.meta["model"]["fingerprint"]["sha"] != fp["sha"]:
            made = self.meta["model"]["fingerprint"]
            raise SessionMismatch(
                f"session {self.name!r} belongs to model {made.get('name') or made['arch']} "
                f"({made['sha'][:12]}); {path.name} is another model ({fp['sha'][:12]})"
            )
        self.spec: SketchSpec = sketch_spec(self.engine)
        self.chat_format = self.engine.chat_format()
        archive_meta = {"model_fingerprint": fp, "sketch": self.spec.to_dict()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if opts.writable:
                self.archive = Archive.open_or_create(self.folder / "archive", archive_meta)
            else:
                self.archive = Archive(self.folder / "archive", writable=False, expect=archive_meta)
        self.history = History(self.folder)
        checkpoint = self._read_checkpoint()
        self.heat = Heat([list(r) for r in checkpoint[0].get("heat", [])] if checkpoint else [])
        if checkpoint is None:
            self.system = opts.system or ""
            sink = self._sink(self.system)
            layout = Layout.plan(n_ctx, len(sink), slot=opts.slot)
        else:
            self.system = checkpoint[0].get("system", "")
            layout = Layout(**checkpoint[0]["layout"])
        if not exists:
            self.meta = {
                "format": FORMAT,
                "name": self.name,
                "model": {"path": str(path.resolve()), "fingerprint": fp},
                "n_ctx": n_ctx,
                "kv": {"type_k": type_k, "type_v": type_v},
                "layout": layout.to_dict(),
                "documents": [],
                "created": _now(),
                "updated": _now(),
            }
        self.window = Window(self.engine, layout, self.archive if opts.writable else None, self.spec)
        if checkpoint is None:
            self.window.start(sink)
            if len(self.archive) and opts.writable:
                self.archive.truncate(0)
            self.history.keep(0, writable=opts.writable)
        else:
            self.window.restore(*checkpoint)
            self._catch_up_prune(checkpoint[0])
            self._reconcile(int(checkpoint[0].get("turns", 0)))
        self.index = SketchIndex(self.archive)
        if opts.writable and opts.system is not None and opts.system != self.system:
            self.set_system(opts.system)
        if opts.writable and not exists:
            self.save()

    def _sink(self, system: str) -> list[int]:
        """BOS, then the system prompt as the chat format writes it."""
        assert self.engine is not None
        bos = [self.engine.bos] if self.engine.add_bos else []
        return bos + self.engine.tokenize(self.chat_format.system(system), special=True)

    def _read_checkpoint(self) -> tuple[dict[str, Any], bytes] | None:
        path = self.folder / "window.bin"
        return _unpack_window(path.read_bytes(), path) if path.is_file() else None

    def restore_window(self) -> None:
        """Put the window back as the last checkpoint left it."""
        checkpoint = self._read_checkpoint()
        if checkpoint is None:
            raise SessionError(f"session {self.name!r} has no saved window")
        self.window.restore(*checkpoint)

    def rollback(self) -> None:
        """Back to the last checkpoint: the window as saved, records filed since then cut."""
        self.restore_window()
        if self.options.writable and len(self.archive) > self.window.archived:
            self.archive.truncate(self.window.archived)
            self.index.refresh()

    def _catch_up_prune(self, saved: dict[str, Any]) -> None:
        """A prune that rewrote the archive but stopped before the checkpoint: finish it here."""
        lag = self.archive.pruned - int(saved.get("pruned", 0))
        if lag > 0:
            self.window.archived -= lag
            self.window.dropped += lag
        self.history.mark_pruned(int(saved.get("turns_pruned", 0)), writable=self.options.writable)

    def _reconcile(self, turns: int) -> None:
        """Cut records and turns past the checkpoint; fewer than it expects is damage."""
        have, want = len(self.archive), self.window.archived
        if have < want:
            raise SessionError(
                f"session {self.name!r}: the archive holds {have:,} tokens, its checkpoint "
                f"expects {want:,}"
            )
        if self.history.last < turns:
            raise SessionError(
                f"session {self.name!r}: the turn log ends at turn {self.history.last}, its "
                f"checkpoint expects {turns}"
            )
        writable = self.options.writable
        if have > want and writable:
            warnings.warn(
                f"session {self.name!r}: {have - want:,} tokens archived after the last "
                "checkpoint (an interrupted ingest or turn) were cut",
                stacklevel=3,
            )
            self.archive.truncate(want)
        self.history.keep(turns, writable=writable)

    def set_system(self, text: str) -> None:
        """A new system prompt: the sink is rebuilt and the recent tokens read again after it."""
        sink = self._sink(text)
        n_ctx = self.window.layout.n_ctx
        try:
            layout = Layout.plan(n_ctx, len(sink), slot=self.window.layout.slot)
        except WindowTooSmall:
            raise WindowTooSmall(f"a system prompt of {len(sink):,} tokens leaves too little of "
                                 f"this session's {n_ctx:,}-token window for the conversation") from None
        self.window = self.window.rebuilt(sink, layout)
        self.system = text
        self.meta["layout"] = layout.to_dict()

    # -- saving ------------------------------------------------------------------

    def save(self) -> None:
        """A checkpoint: the window's state, then the metadata (each replaced atomically)."""
        if not self.options.writable:
            raise SessionError("this session was opened read-only")
        wmeta, state = self.window.snapshot()
        wmeta = {**wmeta, "turns": self.history.last, "turns_pruned": self.history.pruned,
                 "pruned": self.archive.pruned, "system": self.system, "heat": self.heat.to_list()}
        write_atomic(self.folder / "window.bin", _pack_window(wmeta, state))
        self.meta["updated"] = _now()
        self.meta["tokens"] = self.window.stream_end
        self.meta["archived_tokens"] = self.window.archived
        self.meta["turns"] = self.history.last
        self.meta["turns_pruned"] = self.history.pruned
        self.meta["system"] = self.system
        write_atomic(self.folder / "session.json", json.dumps(self.meta, indent=1).encode())

    # -- reading -----------------------------------------------------------------

    @property
    def kv_bytes(self) -> int:
        """The hot window's KV cache: every cell of every layer, at the session's cache types."""
        assert self.engine is not None
        cfg = self.engine.config
        return self.engine.n_ctx * bytes_per_token(self.engine.facts.layers, cfg.type_k, cfg.type_v)

    @property
    def archive_bytes(self) -> int:
        return self.archive.disk_bytes()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hold_lock(folder: Path, name: str, exclusive: bool) -> int:
    """flock the session folder (one writer, or readers); the fd holds it until closed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SessionBusy(_busy(folder, name)) from None
    os.ftruncate(fd, 0)  # who holds it, for the message another process gets
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _busy(folder: Path, name: str) -> str:
    try:
        pid = int((folder / ".lock").read_text().strip())
        who = f"another ikv process (pid {pid})"
    except (OSError, ValueError):
        who = "another ikv process"
    return f"session {name!r} is in use by {who}; close it there first"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class SessionInfo:
    """What `session.json` says, read without loading a model."""

    name: str
    model: str
    n_ctx: int
    documents: int
    tokens: int
    archived_tokens: int
    disk_bytes: int
    updated: str
    turns: int = 0
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def session_info(name: str) -> SessionInfo:
    folder = sessions_dir() / check_name(name)
    meta_path = folder / "session.json"
    if not meta_path.is_file():
        raise SessionNotFound(f"no session named {name!r}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        meta = json.loads(meta_path.read_text())
        fp = meta["model"]["fingerprint"]
        return SessionInfo(name, fp.get("name") or fp["arch"], int(meta["n_ctx"]),
                           len(meta.get("documents", [])), int(meta.get("tokens", 0)),
                           int(meta.get("archived_tokens", 0)), size, meta.get("updated", ""),
                           int(meta.get("turns", 0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return SessionInfo(name, "?", 0, 0, 0, 0, size, "", 0, f"unreadable session.json: {exc}")


def read_meta(name: str) -> dict[str, Any]:
    """A session's session.json, without loading a model."""
    path = sessions_dir() / check_name(name) / "session.json"
    if not path.is_file():
        raise SessionNotFound(f"no session named {name!r}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SessionError(f"unreadable {path}: {exc}") from None


def list_sessions() -> list[SessionInfo]:
    root = sessions_dir()
    if not root.is_dir():
        return []
    names = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and NAME_RE.fullmatch(p.name) and (p / "session.json").is_file())
    return [session_info(n) for n in names]


def remove_session(name: str) -> None:
    """Delete a session that no process has open."""
    folder = sessions_dir() / check_name(name)
    if not (folder / "session.json").is_file():
        raise SessionNotFound(f"no session named {name!r}")
    fd = hold_lock(folder, name, exclusive=True)
    try:
        os.remove(folder / "session.json")  # from here on the folder is no session
        shutil.rmtree(folder)
    finally:
        os.close(fd)


def rename_session(name: str, new: str) -> None:
    """Give a session no process has open another name (the folder moves as a whole)."""
    folder, target = sessions_dir() / check_name(name), sessions_dir() / check_name(new)
    if not (folder / "session.json").is_file():
        raise SessionNotFound(f"no session named {name!r}")
    if target.exists():
        raise SessionError(f"a session named {new!r} already exists")
    fd = hold_lock(folder, name, exclusive=True)
    try:
        meta = read_meta(name)
        meta["name"] = new
        write_atomic(folder / "session.json", json.dumps(meta, indent=1).encode())
        os.rename(folder, target)
    finally:
        os.close(fd)
