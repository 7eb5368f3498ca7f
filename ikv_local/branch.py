"""Going back in a session: take back turns (undo, retry, edit) and fork a session at any turn.

Each turn logs where the stream stood when it began (`start`) and where the window's recent
tokens began then (`window_from`). Nothing since was dropped, so the window as it was before
turn k is rebuilt exactly, the same token ids at the same positions: the archive keeps the
records before `window_from` and the tokens from there to `start` are decoded again after
the sink. The recall slot starts empty, as recall refills it at the start of every turn.
Where nothing aged since that turn began, its window is still in the cache and is only cut.

Crash safety comes from the order of the writes. Taken-back turns are appended to
alternatives.jsonl, then the rebuilt window is checkpointed (session.json first, then
window.bin, which decides), and only then are the log and the records cut. An open cuts
whatever lies past its checkpoint anyway, so a crash at any point leaves the session as it
was before, or as it is after (scripts/faults.py kills and fails every write of both).

A fork is a copy of the session's files made under a hidden name and renamed into place,
then rewound in the copy when it is taken at an earlier turn. Records are append-only and a
rewind truncates them, so the copy cannot share the original's record file (hard links
would cut both). The copy's cost is measured by scripts/fork_cost.py.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ikv_local import files, interrupts
from ikv_local.checkpoint import SessionError
from ikv_local.history import Turn, set_aside
from ikv_local.record import Role
from ikv_local.session import (
    DEFAULT_OPTIONS,
    OpenOptions,
    Session,
    check_name,
    hold_lock,
    sessions_dir,
)
from ikv_local.window import Window

_CHAT_ROLES = (int(Role.USER), int(Role.ASSISTANT))
_SKIPPED = {".lock", "damaged"}


class NothingToTakeBack(SessionError):
    pass


def stream_slice(session: Session, a: int, b: int) -> dict[str, list[int]]:
    """Tokens at stream positions [a, b) and their origins, from the archive and the window."""
    window = session.window
    recent_from = window.archived + window.dropped
    out: dict[str, list[int]] = {"tokens": [], "roles": [], "sources": [], "segments": []}
    if a < recent_from:
        records = session.archive.records()
        positions = records["position"]
        i, j = (int(x) for x in np.searchsorted(positions, [a, min(b, recent_from)]))
        if j - i != min(b, recent_from) - a or (j > i and not session.archive.usable[i:j].all()):
            raise SessionError(f"session {session.name!r} no longer holds every token from "
                               f"position {a:,} (pruned or damaged)")
        part = records[i:j]
        for key, field in (("tokens", "token"), ("roles", "role"), ("sources", "source"),
                           ("segments", "segment")):
            out[key] += [int(x) for x in part[field]]
    if b > recent_from:
        lo = max(a, recent_from) - recent_from
        recent = window.recent.to_dict()
        for key in out:
            out[key] += recent[key][lo : b - recent_from]
    return out


@dataclass(frozen=True)
class Rewind:
    """Where a session goes back to: the window before turn `keep + 1`."""

    keep: int  # turns kept
    taken: list[Turn]
    recent: dict[str, list[int]]
    archived: int  # records kept
    previous_token: int | None


def plan_rewind(session: Session, keep: int) -> Rewind:
    """What going back to just after turn `keep` takes; refused in one line when it cannot."""
    history, window = session.history, session.window
    last = history.last
    if keep == last:
        raise NothingToTakeBack(f"session {session.name!r} is at turn {last}; nothing to take back")
    if not 0 <= keep < last:
        raise SessionError(f"session {session.name!r} has turns 1 to {last}; cannot go back to "
                           f"turn {keep}")
    if keep < history.pruned:
        raise SessionError(f"turns up to {history.pruned} of session {session.name!r} were "
                           "pruned; cannot go back before them")
    if any(n > keep for n in history.damaged):
        raise SessionError(f"turn(s) {history.damaged} of session {session.name!r} are damaged; "
                           f"run: ikv sessions repair {session.name}")
    taken = [t for t in history.turns if t.n > keep]
    first = taken[0]
    point = first.start
    later = stream_slice(session, point, window.stream_end)
    if any(r not in _CHAT_ROLES for r in later["roles"]):
        raise SessionError(f"a document was read into session {session.name!r} after turn "
                           f"{keep}; going back would take it back too (fork before it instead)")
    capacity = window.layout.recent_capacity
    start = first.window_from
    if start is None:  # a turn logged before window_from was: room for a block of answer
        start = point - (capacity - window.layout.block)
    start = max(start, point - capacity, _first_held(session))
    recent = stream_slice(session, start, point)
    before = stream_slice(session, start - 1, start)["tokens"] if start > _first_held(session) else []
    records = session.archive.records()["position"]
    archived = int(np.searchsorted(records, start))
    if archived + window.dropped != start:
        raise SessionError(f"session {session.name!r}: the archive does not hold the stream "
                           f"up to position {start:,}; run: ikv sessions check {session.name}")
    return Rewind(keep, taken, recent, archived, before[0] if before else None)


def _first_held(session: Session) -> int:
    """The first stream position the session still holds (pruning drops the front)."""
    return session.window.dropped


def rewind(session: Session, keep: int, why: str | None) -> list[Turn]:
    """Take back every turn after `keep`; they are kept as alternatives under `why`
    (None: not kept, for a fork's copy). Returns the turns taken back."""
    if not session.options.writable:
        raise SessionError("this session was opened read-only")
    plan = plan_rewind(session, keep)
    window = session.window
    cut = _still_held(window, plan)
    new = window
    if not cut:
        try:
            new = session.decode_window(plan.recent, plan.archived, window.dropped,
                                        plan.previous_token)
        except BaseException:
            session.restore_window()  # the engine's cache was cleared for the new window
            raise
    with interrupts.held():
        if why is not None:
            set_aside(session.folder, plan.taken, why)
        if cut:  # (after set_aside, which may fail: the window stays whole until here)
            window.clear_slot()
            window.truncate(len(plan.recent["tokens"]))
        session.window = new
        session.history.keep(keep, writable=False)
        session.save(going_back=True)  # from here on the session is rewound
        session.history.keep(keep, writable=True)
        session.archive.truncate(plan.archived)
        session.index.refresh()
    return plan.taken


def _still_held(window: Window, plan: Rewind) -> bool:
    """Nothing has aged since the first turn taken back began: the window it began with is
    still in the cache, and cutting what came after keeps its cells as they were decoded
    (beside the recall slot of their own turns), where decoding them again would not."""
    n = len(plan.recent["tokens"])
    return (window.archived == plan.archived and not window.lent
            and window.recent.tokens[:n] == plan.recent["tokens"])


# -- forks -----------------------------------------------------------------------------


def copy_session(folder: Path, new: str) -> Path:
    """A copy of a session folder (whose writer lock the caller holds, or a reader lock)
    under the name `new`: written under a hidden name, then renamed into place whole."""
    target = sessions_dir() / check_name(new)
    if target.exists():
        raise SessionError(f"a session named {new!r} already exists")
    for stale in sessions_dir().glob(f".fork-{new}-*"):  # left by a fork that was killed
        if not _alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = sessions_dir() / f".fork-{new}-{os.getpid()}"
    try:
        for src in sorted(folder.rglob("*")):
            rel = src.relative_to(folder)
            if rel.parts[0] in _SKIPPED or src.name.endswith(".tmp"):
                continue
            dst = tmp / rel
            if src.is_dir():
                files.private_dir(dst)
            elif src.is_file():
                files.private_dir(dst.parent)
                files.copy(src, dst)
        files.private_dir(tmp)
        files.fsync_dir(tmp)
        if target.exists():
            raise SessionError(f"a session named {new!r} already exists")
        files.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _rename_meta(target, new)
    return target


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()


def _rename_meta(folder: Path, new: str) -> None:
    from ikv_local.checkpoint import META_FILE, read_meta_file, write_meta_file

    meta = read_meta_file(folder / META_FILE)
    meta.name = new
    write_meta_file(folder / META_FILE, meta)


@dataclass(frozen=True)
class Fork:
    name: str
    new: str
    at_turn: int
    turns: int  # turns the original has
    tokens: int  # tokens the fork holds


def fork(name: str, new: str, at_turn: int | None = None,
         options: OpenOptions = DEFAULT_OPTIONS) -> Fork:
    """A new session `new` sharing `name`'s conversation up to turn `at_turn` (all of it
    when None); `name` is only read."""
    from ikv_local.session import read_meta

    meta = read_meta(name)
    at = _fork_point(name, new, meta.turns, meta.turns_pruned, at_turn)
    folder = sessions_dir() / name
    fd = hold_lock(folder, name, exclusive=False)
    try:
        copy_session(folder, new)
    finally:
        if fd is not None:
            os.close(fd)
    return _rewound_copy(Fork(name, new, at, meta.turns, meta.tokens), options)


def fork_open(session: Session, new: str, at_turn: int | None = None) -> Fork:
    """`fork` of a session this process has open (and holds the writer lock of)."""
    history = session.history
    at = _fork_point(session.name, new, history.last, history.pruned, at_turn)
    session.save()
    copy_session(session.folder, new)
    options = replace(session.options, model=str(session.meta.model.path))
    return _rewound_copy(Fork(session.name, new, at, history.last, session.window.stream_end),
                         options)


def _fork_point(name: str, new: str, last: int, pruned: int, at_turn: int | None) -> int:
    check_name(new)
    if (sessions_dir() / new).exists():
        raise SessionError(f"a session named {new!r} already exists")
    at = last if at_turn is None else at_turn
    if at > last:
        raise SessionError(f"session {name!r} has turns 1 to {last}; --at-turn {at} is past them")
    if at < 0:
        raise SessionError(f"--at-turn takes 0 to {last}")
    if at < pruned:
        raise SessionError(f"turns up to {pruned} of session {name!r} were pruned; cannot fork "
                           "before them")
    return at


def _rewound_copy(done: Fork, options: OpenOptions) -> Fork:
    """The copy taken back to the fork's turn (a second engine: the copy is its own session)."""
    if done.at_turn == done.turns:
        return done
    try:
        with Session(done.new, replace(options, writable=True, create=False, system=None)) as s:
            rewind(s, done.at_turn, why=None)
            return replace(done, tokens=s.window.stream_end)
    except BaseException:
        from ikv_local.session import remove_session

        remove_session(done.new)  # a fork that cannot be rewound is not left looking whole
        raise
