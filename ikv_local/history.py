"""The conversation log of a session: one checksummed JSON line per completed turn.

The window and the archive hold every token; this log holds what a person reads back (the
turns as shown, what was recalled, timings). It is appended before each checkpoint and the
checkpoint records how many turns it covers, so a line past that count (a crash between the
two writes) is cut on the next writable open, and a torn last line is never read as a turn.

Line formats: 1 (lines carry no "format" key), 2 (this one: each line says "format": 2, and a
turn logs `window_from`, where the window's recent tokens began when it started, which
branch.py needs to rebuild that window exactly). Each step is in `UPGRADES`; a line from a
format newer than this ikv stops the open rather than being taken for damage.

Turns taken back (`/retry`, `/edit`, `/undo`) are not lost: they go to alternatives.jsonl,
checksummed the same way, before the log is cut.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ikv_local import files
from ikv_local.files import write_atomic
from ikv_local.metadata import MetadataError, Upgrade, build, upgrade

LOG_FORMAT = 2
UPGRADES: dict[int, Upgrade] = {1: lambda data: {**data, "format": 2}}  # window_from unknown

LOG_NAME = "turns.jsonl"
ALTERNATIVES_NAME = "alternatives.jsonl"


@dataclass
class Turn:
    n: int  # 1-based
    user: str
    answer: str
    start: int  # stream position where the user's turn begins
    end: int  # stream position after the answer
    recalled: list[dict[str, Any]] = field(default_factory=list)  # Span.to_dict()
    stopped: str = "eog"  # why the answer ended: eog, stop, limit, cancel; given: not generated
    tokens: int = 0
    ttft_seconds: float = 0.0
    recall_seconds: float = 0.0
    tokens_per_s: float | None = None
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    window_from: int | None = None  # stream position of the window's first recent token at `start`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Turn:
        """A logged turn, every field checked, brought up to LOG_FORMAT."""
        if not isinstance(data, dict):
            raise MetadataError("a turn is not a JSON object")
        data = upgrade(data, LOG_FORMAT, UPGRADES, what=f"{LOG_NAME} line ")
        data.pop("format", None)
        return build(cls, data, "turn")


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _encode(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{_digest(body)} {body}\n".encode()


def _decode(line: bytes) -> Any:
    """The JSON on a checksummed line; ValueError when the line is torn or altered."""
    text = line.decode()
    digest, body = text.rstrip("\n").split(" ", 1)
    if _digest(body) != digest or not text.endswith("\n"):
        raise ValueError("the line fails its checksum")
    return json.loads(body)


def encode_line(turn: Turn) -> bytes:
    return _encode({"format": LOG_FORMAT, **turn.to_dict()})


def decode_line(line: bytes) -> Turn | None:
    """The turn on a line, or None when the line is torn or altered."""
    try:
        return Turn.from_dict(_decode(line))
    except (UnicodeDecodeError, ValueError, MetadataError):
        return None


@dataclass
class Alternative:
    """A turn that was taken back, and why: retry, edit or undo."""

    turn: Turn
    why: str
    time: str


def set_aside(folder: Path, turns: list[Turn], why: str) -> None:
    """Keep taken-back turns in alternatives.jsonl (one fsynced append) before the log is cut."""
    if not turns:
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = b"".join(_encode({"format": LOG_FORMAT, "why": why, "time": now,
                              "turn": t.to_dict()}) for t in turns)
    files.append(folder / ALTERNATIVES_NAME, lines, create=True)


def _drop_alternatives_before(folder: Path, first: int) -> None:
    """Pruning forgets the turns taken back before turn `first` too (and any unreadable line)."""
    path = folder / ALTERNATIVES_NAME
    if not path.exists():
        return
    kept = []
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            if int(_decode(line)["turn"]["n"]) >= first:
                kept.append(line)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            continue
    write_atomic(path, b"".join(kept))


def alternatives(folder: Path, n: int | None = None) -> list[Alternative]:
    """Taken-back turns (of turn number `n` only, when given), oldest first; torn or
    altered lines are skipped, and so is one still identical to a turn in the log (a crash
    between setting it aside and cutting the log)."""
    path = folder / ALTERNATIVES_NAME
    if not path.exists():
        return []
    # the whole turn, not its number, start and time: a retry within the same second has those
    live = {encode_line(t) for t in History(folder).turns}
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            data = _decode(line)
            data = upgrade(data, LOG_FORMAT, UPGRADES, what=f"{ALTERNATIVES_NAME} line ")
            turn = Turn.from_dict(data["turn"])
            alt = Alternative(turn, str(data["why"]), str(data["time"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, MetadataError):
            continue
        if (n is None or turn.n == n) and encode_line(turn) not in live:
            out.append(alt)
    return out


@dataclass
class _Line:
    n: int  # the turn's number (inferred from its neighbours for a damaged line)
    raw: bytes
    turn: Turn | None  # None: the line fails its checksum (kept on disk, never served)


class History:
    """turns.jsonl in a session folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOG_NAME
        self.turns: list[Turn] = []
        self._lines: list[_Line] = []
        if not self.path.exists():
            return
        raw = self.path.read_bytes().splitlines(keepends=True)
        parsed = [decode_line(line) for line in raw]
        first = next((t.n - i for i, t in enumerate(parsed) if t is not None), 1)
        n = first - 1
        for line, turn in zip(raw, parsed):
            if turn is not None and turn.n <= n:
                turn = None  # verifies, but out of order: not served either
            n = turn.n if turn is not None else n + 1  # repair may leave gaps; numbers stay
            self._lines.append(_Line(n, line, turn))
        self._index()

    def _index(self) -> None:
        self.turns = [line.turn for line in self._lines if line.turn is not None]

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def damaged(self) -> list[int]:
        """Numbers of the turns whose lines fail their checksums."""
        return [line.n for line in self._lines if line.turn is None]

    @property
    def last(self) -> int:
        """The number of the last turn logged (turns keep their numbers when older ones are pruned)."""
        return self._lines[-1].n if self._lines else self._pruned

    @property
    def pruned(self) -> int:
        """Turns numbered up to this one have been pruned (or are being)."""
        return max(self._pruned, self._lines[0].n - 1 if self._lines else 0)

    _pruned = 0

    def mark_pruned(self, n: int, *, writable: bool) -> None:
        """Turns up to number n are pruned; with `writable`, drop any the log still holds."""
        self._pruned = max(self._pruned, n)
        if writable:
            self.drop_before(n + 1)

    def keep(self, last: int, *, writable: bool) -> None:
        """Hold the turns up to number `last` (the checkpoint's), cutting any beyond."""
        if last > self.last:
            raise ValueError(f"the log ends at turn {self.last}, its checkpoint expects {last}")
        n = sum(1 for line in self._lines if line.n <= last)
        size = self.path.stat().st_size if self.path.exists() else 0
        end = sum(len(line.raw) for line in self._lines[:n])
        if n < len(self._lines) and writable:
            cut = sum(1 for line in self._lines[n:] if line.turn is not None)
            if cut:
                warnings.warn(f"{cut} turn(s) logged after the last checkpoint were cut",
                              stacklevel=2)
        if writable and size != end:
            files.truncate(self.path, end)
        if not n and self._lines:
            self._pruned = max(self._pruned, self._lines[0].n - 1)
        del self._lines[n:]
        self._index()

    def drop_before(self, first: int) -> int:
        """Prune turns numbered below `first` (the log is rewritten whole); how many went."""
        gone = [line for line in self._lines if line.n < first]
        if not gone:
            return 0
        self._pruned = max(self._pruned, gone[-1].n)
        kept = self._lines[len(gone):]
        write_atomic(self.path, b"".join(line.raw for line in kept))
        self._lines = kept
        self._index()
        _drop_alternatives_before(self.path.parent, first)
        return len(gone)

    def set_aside(self) -> list[_Line]:
        """Remove damaged lines from the log (repair keeps them elsewhere); the ones removed."""
        bad = [line for line in self._lines if line.turn is None]
        if bad:
            self._lines = [line for line in self._lines if line.turn is not None]
            write_atomic(self.path, b"".join(line.raw for line in self._lines))
            self._index()
        return bad

    def append(self, turn: Turn) -> None:
        line = encode_line(turn)
        files.append(self.path, line, create=True)
        self._lines.append(_Line(turn.n, line, turn))
        self.turns.append(turn)

    def turn_at(self, position: int) -> Turn | None:
        """The turn whose tokens include this stream position."""
        for turn in reversed(self.turns):
            if turn.start <= position < turn.end:
                return turn
            if turn.end <= position:
                return None
        return None
