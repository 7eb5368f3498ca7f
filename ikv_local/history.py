"""The conversation log of a session: one checksummed JSON line per completed turn.

The window and the archive hold every token; this log holds what a person reads back (the
turns as shown, what was recalled, timings). It is appended before each checkpoint and the
checkpoint records how many turns it covers, so a line past that count (a crash between the
two writes) is cut on the next writable open, and a torn last line is never read as a turn.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ikv_local.archive import write_atomic

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
        return Turn(**json.loads(body))
    except (UnicodeDecodeError, ValueError, TypeError):
        return None


class History:
    """turns.jsonl in a session folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOG_NAME
        self.turns: list[Turn] = []
        self._ends: list[int] = []  # byte offset after each good line
        if not self.path.exists():
            return
        offset = 0
        with open(self.path, "rb") as f:
            for line in f:
                turn = decode_line(line)
                if turn is None or (self.turns and turn.n != self.turns[-1].n + 1):
                    break
                offset += len(line)
                self.turns.append(turn)
                self._ends.append(offset)

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def last(self) -> int:
        """The number of the last turn (turns keep their numbers when older ones are pruned)."""
        return self.turns[-1].n if self.turns else self._pruned

    @property
    def pruned(self) -> int:
        """Turns numbered up to this one have been pruned (or are being)."""
        return max(self._pruned, self.turns[0].n - 1 if self.turns else 0)

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
        n = sum(1 for t in self.turns if t.n <= last)
        size = self.path.stat().st_size if self.path.exists() else 0
        end = self._ends[n - 1] if n else 0
        if writable and size != end:
            if n < len(self.turns):
                warnings.warn(f"{len(self.turns) - n} turn(s) logged after the last checkpoint "
                              "were cut", stacklevel=2)
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        if not n and self.turns:
            self._pruned = max(self._pruned, self.turns[0].n - 1)
        del self.turns[n:], self._ends[n:]

    def drop_before(self, first: int) -> int:
        """Prune turns numbered below `first` (the log is rewritten whole); how many went."""
        gone = [t for t in self.turns if t.n < first]
        if not gone:
            return 0
        self._pruned = max(self._pruned, gone[-1].n)
        kept = self.turns[len(gone):]
        lines = [encode_line(t) for t in kept]
        write_atomic(self.path, b"".join(lines))
        self.turns = kept
        self._ends = list(itertools.accumulate(len(line) for line in lines))
        return len(gone)

    def append(self, turn: Turn) -> None:
        line = encode_line(turn)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.turns.append(turn)
        self._ends.append((self._ends[-1] if self._ends else 0) + len(line))

    def turn_at(self, position: int) -> Turn | None:
        """The turn whose tokens include this stream position."""
        for turn in reversed(self.turns):
            if turn.start <= position < turn.end:
                return turn
            if turn.end <= position:
                return None
        return None
