"""`ikv sessions prune`: the only way ikv forgets, and only when the user asks.

A prune removes the oldest part of a session's stream from the archive and the turn log: the
documents and turns before a date, or all but the last N of them. The hot window is never
pruned: what it holds is the model's working context. Pruned tokens count as dropped, so
every stream position stays where it was; the index is rebuilt from the records that remain.

Order, for crash safety: the archive is replaced first (its header counts what was pruned),
then the checkpoint, then the turn log; an open after a crash finishes the later steps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ikv_local.errors import IkvError
from ikv_local.record import Role
from ikv_local.session import Session


@dataclass(frozen=True)
class Segment:
    kind: str  # "document" or "turn"
    label: str
    start: int  # stream position of its first token (archive end when none is archived)
    when: dt.datetime


@dataclass
class PruneResult:
    session: str
    tokens: int  # archived records removed
    turns: int  # turns removed from the log
    documents: int  # documents whose archived tokens are all gone
    kept_from: int  # the first stream position still archived (or in the window)
    bytes_before: int
    bytes_after: int
    in_window: int  # tokens the cut reached that the hot window holds (kept)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def parse_date(text: str) -> dt.datetime:
    """'2026-11-01' or an ISO time; naive times are UTC, as the session files write them."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise IkvError(f"not a date: {text!r} (try 2026-11-01 or 2026-11-01T12:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _time(stamp: str) -> dt.datetime:
    return parse_date(stamp) if stamp else dt.datetime.min.replace(tzinfo=dt.UTC)


def segments(session: Session) -> list[Segment]:
    """Documents and turns in stream order, each with where it starts and when it came."""
    recs = session.archive.records()
    end = session.window.archived + session.window.dropped
    out = []
    roles, segs = np.asarray(recs["role"]), np.asarray(recs["segment"])
    for i, doc in enumerate(session.meta.documents):
        if doc.pruned_all:
            continue
        hit = np.flatnonzero((roles == Role.DOCUMENT) & (segs == i))
        start = int(recs["position"][hit[0]]) if len(hit) else end
        out.append(Segment("document", doc.path, start, _time(doc.added)))
    for turn in session.history.turns:
        out.append(Segment("turn", f"turn {turn.n}", turn.start, _time(turn.time)))
    return sorted(out, key=lambda s: s.start)


def cut_position(session: Session, *, before: dt.datetime | None = None,
                 keep_last: int | None = None) -> int:
    """The first stream position to keep."""
    if (before is None) == (keep_last is None):
        raise IkvError("prune takes one of --before DATE or --keep-last N")
    segs = segments(session)
    stream_end = session.window.stream_end
    if keep_last is not None:
        if keep_last < 0:
            raise IkvError("--keep-last takes a number of documents and turns, 0 or more")
        return segs[-keep_last].start if 0 < keep_last <= len(segs) else (
            0 if keep_last else stream_end)
    later = [s.start for s in segs if s.when >= before]
    return later[0] if later else stream_end


def archived_before(session: Session, position: int) -> int:
    """The archived tokens a prune at `position` forgets: what the user is asked to confirm."""
    positions = np.asarray(session.archive.records()["position"])  # in stream order
    return int(np.searchsorted(positions, position, side="left"))


def prune(session: Session, position: int) -> PruneResult:
    """Remove every archived token before `position`, and the turns that ended before it."""
    window, archive = session.window, session.archive
    segs = segments(session)
    before = archive.disk_bytes()
    n = archived_before(session, position)
    archive_end = window.archived + window.dropped
    in_window = max(0, min(position, window.stream_end) - archive_end)
    if n:
        archive.drop_front(n)
        window.archived -= n
        window.dropped += n
        session.index.rebuild()
    kept_from = int(archive.records()["position"][0]) if len(archive) else archive_end
    ends = [s.start for s in segs[1:]] + [window.stream_end]
    docs = session.meta.documents
    gone_docs = {s.label for s, end in zip(segs, ends) if s.kind == "document" and end <= kept_from}
    for doc in docs:
        if doc.path in gone_docs:
            doc.pruned_all = True
    gone = [t.n for t in session.history.turns if t.end <= kept_from]
    if gone:
        session.history.mark_pruned(gone[-1], writable=False)
    session.save()  # the checkpoint names the pruned turns before the log loses them
    turns = session.history.drop_before(session.history.pruned + 1)
    return PruneResult(session.name, n, turns, len(gone_docs), kept_from, before,
                       archive.disk_bytes(), in_window)
