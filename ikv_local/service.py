"""The model behind `ikv serve`: one engine's worth of work at a time, sessions swapped in and out.

Requests wait their turn for the model (a lock), at most `max_queue` of them; one more is
refused at once (`Busy`, HTTP 429). Each request is matched to its session
(`conversation.py`), the session opened if another one is (its window restored from its
checkpoint, the weights shared: `engine.py` keeps a loaded model), the exchanges it has not
seen appended, and the question answered as a chat turn, so it is logged and checkpointed as
`ikv chat` keeps one. A cancelled answer (the client went away) is kept as a stopped turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ikv_local.chat import Chat, ChatSettings, span_origin
from ikv_local.conversation import (
    PREFIX,
    Exchange,
    Match,
    align,
    branch_name,
    choose,
    family,
    session_name,
)
from ikv_local.errors import IkvError
from ikv_local.history import History, Turn
from ikv_local.session import OpenOptions, Session, sessions_dir


class Busy(IkvError):
    """The queue is full (HTTP 429)."""


@dataclass
class Reply:
    session: str
    turn: Turn
    prompt_tokens: int
    branched_from: str | None = None
    appended: int = 0  # past exchanges the session had not seen, appended before the turn
    recalled: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "length" if self.turn.stopped == "limit" else "stop"


class Service:
    def __init__(self, options: OpenOptions, settings: ChatSettings, max_queue: int = 8) -> None:
        self.options = options  # model, window and cache types of new sessions, threads, GPU
        self.settings = settings
        self.max_queue = max_queue
        self.lock = threading.Lock()  # the model: one request at a time
        self._count = threading.Lock()
        self.waiting = 0  # requests holding or waiting for the model
        self.session: Session | None = None
        self.model_id = Path(options.model).stem if options.model else "ikv"

    # -- the queue -----------------------------------------------------------------------

    def enter(self) -> None:
        with self._count:
            if self.waiting >= self.max_queue:
                raise Busy(f"the server is busy: {self.waiting} requests are queued for the "
                           "model; try again shortly")
            self.waiting += 1

    def leave(self) -> None:
        with self._count:
            self.waiting -= 1

    # -- a request -------------------------------------------------------------------------

    def answer(self, exchange: Exchange, settings: ChatSettings, user: str | None = None,
               on_text: Callable[[str], None] | None = None,
               cancel: threading.Event | None = None) -> Reply:
        """Answer the request's question in its conversation (call `enter` first)."""
        with self.lock:
            name, match = self._find(exchange, user)
            branched = None
            if match is not None and match.diverges:
                chat = Chat(self._open(match.session, exchange), settings)
                taken = {p.name for p in sessions_dir().iterdir()} if sessions_dir().is_dir() else set()
                branched, name = match.session, branch_name(match.session, taken)
                chat.fork(name, match.upto)
            session = self._open(name, exchange)
            chat = Chat(session, settings)
            unseen = match.unseen if match is not None else exchange.past
            for u, a in unseen:
                chat.record(u, a)
            engine = session.engine
            assert engine is not None
            prompt = len(engine.tokenize(session.chat_format.user(exchange.question), special=True))
            turn, _ = chat.turn(exchange.question, on_text=on_text, cancel=cancel)
            recalled = [{**span, "from": span_origin(session, span)} for span in turn.recalled]
            return Reply(session.name, turn, prompt, branched, len(unseen), recalled)

    def _find(self, exchange: Exchange, user: str | None) -> tuple[str, Match | None]:
        """The session for this request and how the request sits on it (None: a new one)."""
        name = session_name(exchange, user)
        names = sorted(p.name for p in sessions_dir().iterdir()) if sessions_dir().is_dir() else []
        names = [n for n in names if n.startswith(PREFIX) and (sessions_dir() / n / "session.json").is_file()]
        own = family(name, names)
        best = choose(self._align(n, exchange, named=user is not None) for n in own)
        if best is None and exchange.past:  # the client dropped the beginning: look everywhere
            best = choose(self._align(n, exchange) for n in names if n not in own)
        if best is None:
            return (name if name not in names else branch_name(name, set(names))), None
        return best.session, best

    def _align(self, name: str, exchange: Exchange, named: bool = False) -> Match | None:
        """How the request sits on session `name`; with `named` (the client named the
        conversation) a request that aligns nowhere, or sends no past, goes on at the end."""
        if self.session is not None and self.session.name == name:
            history = self.session.history
        else:
            history = History(sessions_dir() / name)
        end = Match(name, 0, history.last, history.last)
        if not exchange.past and history.last:
            return end if named else None  # unnamed: a first question again, a new session
        found = align(name, exchange.past, history.turns, history.last)
        return end if named and found is None else found

    def _open(self, name: str, exchange: Exchange) -> Session:
        if self.session is not None and self.session.name == name:
            return self.session
        self.close()
        opts = replace(self.options, create=True, system=exchange.system or None)
        self.session = Session(name, opts)
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
