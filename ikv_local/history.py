"""The conversation log of a session: one checksummed JSON line per completed turn.

The window and the archive hold every token; this log holds what a person reads back (the
turns as shown, what was recalled, timings). It is appended before each checkpoint and the
checkpoint records how many turns it covers, so a line past that count (a crash between the
two writes) is cut on the next writable open, and a torn last line is never read as a turn.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
                if turn is None or turn.n != len(self.turns) + 1:
                    break
                offset += len(line)
                self.turns.append(turn)
                self._ends.append(offset)

    def __len__(self) -> int:
        return len(self.turns)

    def keep(self, n: int, *, writable: bool) -> None:
        """Hold exactly the first n turns (the checkpoint's count), cutting any beyond."""
        if n > len(self.turns):
            raise ValueError(f"the log holds {len(self.turns)} turns, its checkpoint expects {n}")
        size = self.path.stat().st_size if self.path.exists() else 0
        end = self._ends[n - 1] if n else 0
        if writable and size != end:
            if n < len(self.turns):
                warnings.warn(f"{len(self.turns) - n} turn(s) logged after the last checkpoint "
                              "were cut", stacklevel=2)
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        del self.turns[n:], self._ends[n:]

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
