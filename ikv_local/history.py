"""The conversation log of a session: one checksummed JSON line per completed turn.

The window and the archive hold every token; this log holds what a person reads back (the
turns as shown, what was recalled, timings). It is appended before each checkpoint and the
checkpoint records how many turns it covers, so a line past that count (a crash between the
two writes) is cut on the next writable open, and a torn last line is never read as a turn.

Line formats: 1 (this one; lines carry no "format" key). A later format writes its number in
each line and adds its step to `UPGRADES`; a line from a format newer than this ikv stops the
open rather than being taken for damage.
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

LOG_FORMAT = 1
UPGRADES: dict[int, Upgrade] = {}

LOG_NAME = "turns.jsonl"


@dataclass
class Turn:
    n: int  # 1-based
    user: str
    answer: str
    start: int  # stream position where the user's turn begins
    end: int  # stream position after the answer
    recalled: list[dict[str, Any]] = field(default_factory=list)  # Span.to_dict()
    stopped: str = "eog"  # why the answer ended: eog, stop, limit, cancel
    tokens: int = 0
    ttft_seconds: float = 0.0
    recall_seconds: float = 0.0
    tokens_per_s: float | None = None
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

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


def encode_line(turn: Turn) -> bytes:
    body = json.dumps(turn.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return f"{_digest(body)} {body}\n".encode()


def decode_line(line: bytes) -> Turn | None:
    """The turn on a line, or None when the line is torn or altered."""
    try:
        text = line.decode()
        digest, body = text.rstrip("\n").split(" ", 1)
        if _digest(body) != digest or not text.endswith("\n"):
            return None
        return Turn.from_dict(json.loads(body))
    except (UnicodeDecodeError, ValueError, MetadataError):
        return None


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
