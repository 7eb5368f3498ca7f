"""A session on disk: metadata, the archive and its index, and the hot window's saved state.

<data dir>/sessions/NAME/          (0700; every file 0600)
    session.json   model path and fingerprint, context, settings, documents, and the window's
                   token ids; checksummed (checkpoint.py)
    window.bin     the window's bookkeeping and llama.cpp's state of sequence 0, with a copy
                   of session.json and the source names; checksummed (a checkpoint)
    turns.jsonl    the turn log (history.py)
    archive/       records, sources, index
    damaged/       what `ikv sessions repair` set aside
    .lock          flock: one writer, or any number of readers

The archive is appended as the window ages; a checkpoint records how many records it had.
The archive is opened with that count: records past it (an interrupted ingest or turn) are
cut by a writer and never seen by a reader, so the window and the archive always describe
one stream of tokens. A lost or damaged file is refused with one line naming
`ikv sessions repair` (repair.py), never re-adopted or truncated.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ikv_local import files
from ikv_local.archive import RECORDS_FILE, SOURCES_FILE, Archive
from ikv_local.calibrate import sketch_spec
from ikv_local.checkpoint import (
    META_FILE,
    WINDOW_FILE,
    Damaged,
    SessionError,
    read_meta_file,
    read_window,
    repair_hint,
    write_meta_file,
    write_window,
)
from ikv_local.engine import Engine, EngineConfig
from ikv_local.errors import ModelError
from ikv_local.files import FILE_MODE, private_dir, storage_error, unused
from ikv_local.filing import Origin
from ikv_local.fingerprint import model_fingerprint, model_label
from ikv_local.history import LOG_NAME, History
from ikv_local.index import SketchIndex
from ikv_local.kvcost import bytes_per_token
from ikv_local.metadata import (
    KvTypes,
    MetadataError,
    ModelRef,
    NewerFormat,
    SessionMeta,
    WindowHeader,
)
from ikv_local.model_file import resolve_model
from ikv_local.paths import data_dir
from ikv_local.record import ArchiveFormatError, Role
from ikv_local.sequences import N_SEQ
from ikv_local.sketch import SketchSpec
from ikv_local.support import check as check_memory
from ikv_local.window import Layout, Recent, Window, WindowTooSmall

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
    return unused(sessions_dir() / time.strftime("chat-%Y%m%d-%H%M%S")).name


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
    rebuild: bool = False  # repair: a lost window is decoded again from session.json's copy


DEFAULT_OPTIONS = OpenOptions()  # frozen: one default shared by every call


class Session:
    """An open session: engine, window, archive and index, bound to one model."""

    def __init__(self, name: str, options: OpenOptions = DEFAULT_OPTIONS) -> None:
        self.name = check_name(name)
        self.folder = sessions_dir() / name
        self.options = options
        self.engine: Engine | None = None
        self._lock_fd: int | None = None
        meta_path = self.folder / META_FILE
        made = False  # this process made the folder's files: on failure it removes them
        try:
            if not meta_path.is_file() and not options.create:
                raise _not_found(self.folder, name)
            self._lock_fd = hold_lock(self.folder, name, exclusive=options.writable)
            exists = meta_path.is_file()  # looked at again, now that no writer can be at work
            if not exists:
                if not options.create or holds_data(self.folder):
                    raise _not_found(self.folder, name)
                made = True
            if exists:
                self.meta: SessionMeta = self._read_meta(meta_path)
            self._load(exists)
        except BaseException:
            if made and self._lock_fd is not None and not meta_path.exists():
                shutil.rmtree(self.folder, ignore_errors=True)  # ours alone: we hold the lock
            self.close()
            raise

    def _read_meta(self, path: Path) -> SessionMeta:
        try:
            return read_meta_file(path)
        except Damaged as exc:
            raise Damaged(f"session {self.name!r}: {exc}; {repair_hint(self.name)}") from None
        except NewerFormat as exc:
            raise NewerFormat(f"session {self.name!r}: {exc}") from None

    # -- opening -----------------------------------------------------------------

    def _load(self, exists: bool) -> None:
        if exists:
            self._resume()
        else:
            self._create()
        self.index = SketchIndex(self.archive)
        opts = self.options
        if opts.writable and opts.system is not None and opts.system != self.system:
            self.set_system(opts.system)
        if opts.writable and not exists:
            self.save()

    def _create(self) -> None:
        """A new session: the options' window size and cache types, an empty archive."""
        opts = self.options
        kv = KvTypes(opts.type_k, opts.type_v)
        path = resolve_model(opts.model)
        fp = self._start_engine(path, opts.n_ctx, kv, made=None)
        self._open_archive(fp, None, exists=False)
        self.history = History(self.folder)
        self.history.keep(0, writable=opts.writable)
        self.system = opts.system or ""
        sink = self._sink(self.system)
        layout = Layout.plan(opts.n_ctx, len(sink), slot=opts.slot)
        self.meta = SessionMeta(self.name, ModelRef(str(path.resolve()), fp), opts.n_ctx,
                                layout.to_dict(), [], kv, created=_now(), updated=_now())
        self.window = self._window(layout)
        self.window.start(sink)

    def _resume(self) -> None:
        """A session as its last checkpoint left it; repairing a lost checkpoint, as
        session.json's copy of it says."""
        checkpoint = self._read_checkpoint()
        if checkpoint is None and not (self.options.rebuild and self.options.writable):
            raise Damaged(f"session {self.name!r} has lost its window checkpoint ({WINDOW_FILE}); "
                          f"{repair_hint(self.name)}")
        if checkpoint is not None and checkpoint[0].session is not None:
            self._adopt_copy(checkpoint[0])
        saved = checkpoint[0] if checkpoint else self.meta.window
        path = self._model_path()
        fp = self._start_engine(path, self.meta.n_ctx, self.meta.kv, self.meta.model.fingerprint)
        self._open_archive(fp, saved, exists=True)
        self.history = History(self.folder)
        self.system = (saved.system if saved else None) or self.meta.system
        self.window = self._window(Layout(**(saved.layout if saved else self.meta.layout)))
        if checkpoint is not None:
            self.window.restore(*checkpoint)
        else:
            self._decode_lost_window(saved)
        self._catch_up_prune(saved)
        turns = saved.turns if saved else None
        self._reconcile(self.history.last if turns is None else turns)

    def _model_path(self) -> Path:
        if self.options.model is not None:
            return resolve_model(self.options.model)
        path = Path(self.meta.model.path)
        if not path.is_file():
            raise ModelError(
                f"session {self.name!r} was made with {path}, which is gone; "
                "pass the same model with --model"
            )
        return path

    def _start_engine(self, path: Path, n_ctx: int, kv: KvTypes,
                      made: dict[str, Any] | None) -> dict[str, Any]:
        """The engine, checked against the model the session was `made` with; then the
        model's sketch. A model seen for the first time is calibrated here, in a second
        engine as large as calibration needs (see calibrate)."""
        opts = self.options
        self.engine = Engine(path, EngineConfig(n_ctx=n_ctx, n_seq_max=N_SEQ,
                                                n_threads=opts.n_threads,
                                                n_gpu_layers=opts.n_gpu_layers,
                                                type_k=kv.type_k, type_v=kv.type_v,
                                                flash_attn=True if kv.type_v != "f16" else None))
        check_memory(self.engine.facts)
        fp = model_fingerprint(self.engine)
        if made is not None and made["sha"] != fp["sha"]:
            raise SessionMismatch(
                f"session {self.name!r} belongs to model {model_label(made)} "
                f"({made['sha'][:12]}); {path.name} is another model ({fp['sha'][:12]})"
            )
        self.chat_format = self.engine.chat_format()
        return fp

    def _sketch(self, folder: Path, exists: bool) -> SketchSpec:
        """An archive's own sketch for its records, the model's for a new one. The model's is
        measured on this machine, and another machine's kernels (AVX2 against AVX-512) give
        means a few ulps apart: a session carried there would no longer open."""
        stored = Archive.stored_meta(folder) if exists else None
        if stored and isinstance(stored.get("sketch"), dict):
            try:
                return SketchSpec.from_dict(stored["sketch"])
            except (KeyError, TypeError, ValueError):
                pass  # checked against the model's below, and refused in its words
        return sketch_spec(self.engine)

    def _window(self, layout: Layout) -> Window:
        return Window(self.engine, layout, self.archive if self.options.writable else None,
                      self.spec)

    def _adopt_copy(self, saved: WindowHeader) -> None:
        """The checkpoint's copy of the metadata is the latest: session.json is written after
        window.bin, so a crash between the two leaves session.json a checkpoint behind."""
        assert saved.session is not None
        try:
            copy = SessionMeta.from_dict({**saved.session, "name": self.name})
        except (MetadataError, NewerFormat) as exc:
            raise Damaged(f"session {self.name!r}: {WINDOW_FILE}'s copy of {META_FILE}: {exc}; "
                          f"{repair_hint(self.name)}") from None
        if replace(copy, window=None) == replace(self.meta, window=None):
            return
        copy.window = saved.copy()
        self.meta = copy
        if self.options.writable:
            write_meta_file(self.folder / META_FILE, self.meta)

    def _open_archive(self, fp: dict[str, Any], saved: WindowHeader | None, exists: bool) -> None:
        """The archive as the last checkpoint committed it, its sources checked against it."""
        folder = self.folder / "archive"
        self.spec = self._sketch(folder, exists)
        meta = {"model_fingerprint": fp, "sketch": self.spec.to_dict()}
        committed: int | None = 0
        if saved:
            committed = saved.committed
        elif exists:
            committed = None  # repair of a format-1 session: no count to go by, keep what verifies
        if exists and not (folder / RECORDS_FILE).is_file() and (committed or committed is None):
            raise Damaged(f"session {self.name!r} has lost its archive; {repair_hint(self.name)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.options.writable:
                self.archive = Archive.open_or_create(folder, meta, committed_total=committed)
            else:
                self.archive = Archive(folder, writable=False, expect=meta,
                                       committed_total=committed)
        report = self.archive.report
        if report.missing and not self.options.rebuild:
            raise Damaged(f"session {self.name!r}: the archive holds {len(self.archive):,} tokens, "
                          f"its checkpoint expects {len(self.archive) + report.missing:,}; "
                          f"{repair_hint(self.name)}")
        if report.dropped_tail and self.options.writable:
            warnings.warn(f"session {self.name!r}: {report.dropped_tail:,} tokens archived after "
                          "the last checkpoint (an interrupted ingest or turn) were cut",
                          stacklevel=4)
        if report.bad_inside:
            warnings.warn(f"session {self.name!r}: {len(report.bad_inside):,} archived tokens "
                          f"fail their checksums and are not recalled; {repair_hint(self.name)}",
                          stacklevel=4)
        try:
            names = self.archive.sources()
        except ArchiveFormatError as exc:
            raise Damaged(f"session {self.name!r}: {exc}; {repair_hint(self.name)}") from None
        kept = saved.sources if saved else None
        if kept is not None and names[: len(kept)] != kept and not self.options.rebuild:
            raise Damaged(f"session {self.name!r}: {SOURCES_FILE} disagrees with the last "
                          f"checkpoint; {repair_hint(self.name)}")

    def _decode_lost_window(self, copy: WindowHeader | None) -> None:
        """Repair: the window decoded again from the token ids session.json keeps."""
        lost = self.archive.report.missing
        if copy is None:  # no copy (a format-1 session): the records say where the window was
            recent: dict[str, list[int]] = {"tokens": [], "roles": [], "sources": [],
                                            "segments": []}
            archived, dropped, previous = len(self.archive) - lost, lost, None
            if len(self.archive):
                dropped = int(self.archive.records()["position"][-1]) + 1 - len(self.archive)
        else:
            recent = copy.recent
            archived, dropped = copy.archived - lost, copy.dropped + lost
            previous = copy.previous_token
        self.window = self.decode_window(recent, archived, dropped, previous)

    def decode_window(self, recent: dict[str, list[int]], archived: int, dropped: int,
                      previous_token: int | None) -> Window:
        """A window on this session's sink and layout holding `recent` (tokens and their
        origins, as `Recent.to_dict` gives them), decoded again; nothing is filed, so
        `recent` must fit the window's room for recent tokens. The engine's cache is
        cleared first: the window this replaces is gone."""
        window = self._window(self.window.layout)
        window.start(self._sink(self.system))
        window.archived, window.dropped = archived, dropped
        window.previous_token = previous_token
        if len(recent["tokens"]) > window.layout.recent_capacity:
            raise SessionError(f"{len(recent['tokens']):,} recent tokens do not fit a window "
                               f"with room for {window.layout.recent_capacity:,}")
        r = Recent(*(list(recent[k]) for k in ("tokens", "roles", "sources", "segments")))
        for a, b in r.runs(len(r)):
            window.append(r.tokens[a:b], Origin(Role(r.roles[a]), r.sources[a], r.segments[a]))
        return window

    def _sink(self, system: str) -> list[int]:
        """BOS, then the system prompt as the chat format writes it."""
        assert self.engine is not None
        bos = [self.engine.bos] if self.engine.add_bos else []
        return bos + self.engine.tokenize(self.chat_format.system(system), special=True)

    def _read_checkpoint(self) -> tuple[WindowHeader, bytes] | None:
        try:
            return read_window(self.folder)
        except Damaged as exc:
            if self.options.rebuild and self.options.writable:
                return None
            raise Damaged(f"session {self.name!r}: {exc}; {repair_hint(self.name)}") from None
        except NewerFormat as exc:
            raise NewerFormat(f"session {self.name!r}: {exc}") from None

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

    def _catch_up_prune(self, saved: WindowHeader | None) -> None:
        """A prune that rewrote the archive but stopped before the checkpoint: finish it here."""
        lag = self.archive.pruned - (saved.pruned if saved else 0)
        if lag > 0:
            self.window.archived -= lag
            self.window.dropped += lag
        self.history.mark_pruned(saved.turns_pruned if saved else 0, writable=self.options.writable)

    def _reconcile(self, turns: int) -> None:
        """Cut turns past the checkpoint; fewer than it expects is damage."""
        if self.history.last < turns and not self.options.rebuild:
            raise Damaged(
                f"session {self.name!r}: the turn log ends at turn {self.history.last}, its "
                f"checkpoint expects {turns}; {repair_hint(self.name)}"
            )
        self.history.keep(min(turns, self.history.last), writable=self.options.writable)
        if self.history.damaged:
            warnings.warn(f"session {self.name!r}: turn(s) {self.history.damaged} of the log fail "
                          f"their checksums and are not shown; {repair_hint(self.name)}",
                          stacklevel=3)

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
        self.meta.layout = layout.to_dict()

    # -- saving ------------------------------------------------------------------

    def save(self, *, going_back: bool = False) -> None:
        """A checkpoint: the window's state, then the metadata (each replaced atomically).

        `going_back` (a rewind, whose counts are smaller than the last checkpoint's): the
        metadata first, so a crash between the two leaves session.json a step behind
        window.bin, as an interrupted save always does, and the open goes on from window.bin.
        """
        if not self.options.writable:
            raise SessionError("this session was opened read-only")
        meta = self.meta
        meta.updated = _now()
        meta.tokens = self.window.stream_end
        meta.archived_tokens = self.window.archived
        meta.turns = self.history.last
        meta.turns_pruned = self.history.pruned
        meta.system = self.system
        snapshot, state = self.window.snapshot()
        header = replace(snapshot, turns=self.history.last, turns_pruned=self.history.pruned,
                         pruned=self.archive.pruned, system=self.system,
                         session=meta.copy(), sources=self.archive.sources())
        meta.window = header.copy()
        if going_back:
            write_meta_file(self.folder / META_FILE, meta)
        write_window(self.folder, header, state)
        if not going_back:
            write_meta_file(self.folder / META_FILE, meta)

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
        if getattr(self, "engine", None) is not None:
            self.engine.close()
            self.engine = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hold_lock(folder: Path, name: str, exclusive: bool) -> int | None:
    """flock the session folder (one writer, or readers); the fd holds it until closed.

    The lock file is checked to still be the folder's after the lock is taken: a process
    that failed to make a new session removes its folder, and a lock taken on the removed
    file would let two writers in. A reader on a read-only filesystem with no lock file gets
    None: no writer can be at work there.
    """
    while True:
        if exclusive:
            private_dir(folder)
        elif not folder.is_dir():
            raise _not_found(folder, name)
        lock = folder / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            if exclusive:
                raise storage_error(exc, lock, "lock") from None
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                return None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SessionBusy(_busy(folder, name)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:  # who holds it, for the message another process gets
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    return fd


def holds_data(folder: Path) -> bool:
    """Anything in a session folder worth keeping (a new session may only start in an empty one)."""
    if any((folder / n).exists() for n in (WINDOW_FILE, META_FILE, LOG_NAME)):
        return True
    records = folder / "archive" / RECORDS_FILE
    if (folder / "archive" / SOURCES_FILE).exists():
        return True
    if not records.exists():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return len(Archive(folder / "archive", writable=False)) > 0
    except Exception:  # an unreadable archive is still somebody's data
        return True


def _not_found(folder: Path, name: str) -> SessionError:
    if folder.is_dir() and holds_data(folder):
        return Damaged(f"session {name!r} has lost its {META_FILE}; {repair_hint(name)}")
    return SessionNotFound(f"no session named {name!r}; make one with: ikv ingest FILE --session {name}")


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
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        problem = _not_found(folder, name)
        if isinstance(problem, SessionNotFound):
            raise problem
        return SessionInfo(name, "?", 0, 0, 0, 0, _size(folder), "", 0, str(problem))
    size = _size(folder)
    try:
        meta = read_meta_file(meta_path)
        fp = meta.model.fingerprint
        return SessionInfo(name, model_label(fp), meta.n_ctx, len(meta.documents),
                           meta.tokens, meta.archived_tokens, size, meta.updated, meta.turns)
    except NewerFormat as exc:
        return SessionInfo(name, "?", 0, 0, 0, 0, size, "", 0, str(exc))
    except (Damaged, OSError, KeyError) as exc:
        return SessionInfo(name, "?", 0, 0, 0, 0, size, "", 0,
                           f"damaged {META_FILE} ({exc}); {repair_hint(name)}")


def committed_records(name: str) -> int | None:
    """Records the last checkpoint committed (pruned ones included); None without one."""
    try:
        checkpoint = read_window(sessions_dir() / name)
    except Damaged:
        checkpoint = None
    saved = checkpoint[0] if checkpoint else read_meta(name).window
    return saved.committed if saved else None


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def read_meta(name: str) -> SessionMeta:
    """A session's session.json, checked, without loading a model."""
    folder = sessions_dir() / check_name(name)
    if not (folder / META_FILE).is_file():
        raise _not_found(folder, name)
    try:
        return read_meta_file(folder / META_FILE)
    except Damaged as exc:
        raise Damaged(f"session {name!r}: {exc}; {repair_hint(name)}") from None


def list_sessions() -> list[SessionInfo]:
    """Every session folder, damaged ones included (with their problem), the most recently
    updated first (then by name): the order `sessions list` and the TUI show."""
    root = sessions_dir()
    if not root.is_dir():
        return []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name)
                   and ((p / META_FILE).is_file() or holds_data(p)))
    infos = [session_info(n) for n in names]
    return sorted(infos, key=lambda i: i.updated, reverse=True)  # stable: names stay in order


def remove_session(name: str) -> str | None:
    """Delete a session no process has open; for a folder that is a link, only the link.

    Returns the link's target when only a link was removed.
    """
    folder = sessions_dir() / check_name(name)
    if not folder.is_dir() or not ((folder / META_FILE).is_file() or holds_data(folder)):
        raise SessionNotFound(f"no session named {name!r}")
    fd = hold_lock(folder, name, exclusive=True)
    try:
        if folder.is_symlink():  # what it points at may be anywhere: leave it as it is
            target = os.readlink(folder)
            os.unlink(folder)
            return target
        os.remove(folder / META_FILE) if (folder / META_FILE).exists() else None
        shutil.rmtree(folder)  # from the line above on, the folder is no session
        return None
    except OSError as exc:
        raise storage_error(exc, folder, "delete") from None
    finally:
        if fd is not None:
            os.close(fd)


def rename_session(name: str, new: str) -> None:
    """Give a session no process has open another name (the folder moves as a whole)."""
    folder, target = sessions_dir() / check_name(name), sessions_dir() / check_name(new)
    if not (folder / META_FILE).is_file():
        raise _not_found(folder, name)
    if target.exists():
        raise SessionError(f"a session named {new!r} already exists")
    fd = hold_lock(folder, name, exclusive=True)
    try:
        meta = read_meta(name)
        meta.name = new
        write_meta_file(folder / META_FILE, meta)
        files.rename(folder, target)
    finally:
        if fd is not None:
            os.close(fd)


def session_exists(name: str) -> bool:
    """Whether opening `name` resumes a session (it has a session.json) or makes one."""
    return (sessions_dir() / check_name(name) / META_FILE).is_file()
