"""Which session an OpenAI-style request belongs to, and what of it the session has not seen.

A stock client sends the whole conversation every time, and once its own limit is hit it
drops the oldest messages. No client sends an id, so a conversation is recognised by what it
says (docs/server.md has examples):

1. Its name: `api-` and a digest of the system prompt and the first user message, or of the
   `user` field / `X-Session` header when the client gives one (`api-u-` and a digest).
2. The request's past exchanges (user message, assistant answer) are aligned with the turn
   logs of that session and of its branches; if none of those is the conversation (the
   client dropped the first messages, so the digest is of another message), with every
   session the server made. Whitespace is not compared.
3. The best alignment says what to do: the request's past is the end of the log, so its last
   user message is the next turn (`append`); the request also holds exchanges the log has
   not seen, which are appended as said before the turn; or the request parts from the log
   (an edited or regenerated message), so the session is forked at the last turn they share
   and the conversation goes on in the fork (`branch`), leaving the old one as it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ikv_local.errors import IkvError
from ikv_local.history import Turn

PREFIX = "api-"


class BadRequest(IkvError):
    """What the client sent cannot be served (HTTP 400)."""

    exit_code = 2


@dataclass(frozen=True)
class Exchange:
    """A request's messages: the system prompt, past (user, answer) pairs, the new question."""

    system: str
    past: list[tuple[str, str]]
    question: str


def text_of(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}: only text parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(f"{where}: 'content' must be a string or a list of text parts")


def parse_messages(messages: Any) -> Exchange:
    """The exchange in `messages`; BadRequest for anything a chat cannot continue."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    system: list[str] = []
    past: list[tuple[str, str]] = []
    pending: list[str] = []  # user messages since the last answer
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'")
        role, text = m["role"], text_of(m.get("content"), f"messages[{i}]")
        if role in ("system", "developer"):
            if past or pending:
                pending.append(text)  # a late instruction reads as part of the next user turn
            else:
                system.append(text)
        elif role == "user":
            pending.append(text)
        elif role == "assistant":
            if not pending:
                if not past:  # a client that dropped the user message before it: skip it
                    continue
                raise BadRequest(f"messages[{i}]: two assistant messages in a row")
            past.append(("\n".join(pending), text))
            pending = []
        else:
            raise BadRequest(f"messages[{i}]: role {role!r} is not supported (system, user, "
                             "assistant)")
    if not pending:
        raise BadRequest("the last message must be the user's")
    return Exchange("\n".join(system), past, "\n".join(pending))


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(" ".join(p.split()).encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def session_name(exchange: Exchange, user: str | None = None) -> str:
    """The conversation's session name, from the client's id or from its beginning."""
    if user:
        return f"{PREFIX}u-{_digest(user)}"
    first = exchange.past[0][0] if exchange.past else exchange.question
    return f"{PREFIX}{_digest(exchange.system, first)}"


@dataclass(frozen=True)
class Match:
    """How a request sits on a session's log."""

    session: str
    shared: int  # the request's past exchanges found in the log, in a row
    upto: int  # the log's turn number after the last shared exchange
    last: int  # the log's last turn
    unseen: list[tuple[str, str]] = field(default_factory=list)  # past exchanges to append

    @property
    def diverges(self) -> bool:
        return self.upto < self.last


def align(session: str, past: Sequence[tuple[str, str]], turns: Sequence[Turn],
          last: int) -> Match | None:
    """Where the request's past exchanges sit in a log (`turns`, numbered up to `last`)."""
    n = len(turns)
    if not past:
        return Match(session, 0, turns[0].n - 1 if turns else last, last, [])
    best: Match | None = None
    for j in range(n - 1, -1, -1):  # latest start first
        if not (_same(turns[j].user, past[0][0]) and _same(turns[j].answer, past[0][1])):
            continue
        m = 1
        while m < len(past) and j + m < n and _same(turns[j + m].user, past[m][0]) \
                and _same(turns[j + m].answer, past[m][1]):
            m += 1
        here = Match(session, m, turns[j + m - 1].n, last, list(past[m:]))
        if best is None or here.shared > best.shared:
            best = here
    return best


def choose(matches: Iterable[Match | None]) -> Match | None:
    """The session a request goes on in: one it continues without parting (most shared
    first), else the one it shares most with (to be forked)."""
    found = [m for m in matches if m is not None]
    if not found:
        return None
    return max(found, key=lambda m: (not m.diverges, m.shared, m.upto))


def branch_name(name: str, taken: set[str]) -> str:
    """`name.b2`, `name.b3`, ...: the next branch of a conversation not yet on disk."""
    root = re.sub(r"\.b\d+$", "", name)
    k = 2
    while f"{root}.b{k}" in taken:
        k += 1
    return f"{root}.b{k}"


def family(name: str, names: Iterable[str]) -> list[str]:
    """A conversation's session and its branches."""
    root = re.sub(r"\.b\d+$", "", name)
    return [n for n in names if n == root or re.fullmatch(re.escape(root) + r"\.b\d+", n)]
