"""A conversation in a session: every turn goes through the window, recall runs before each
answer, and the session is durable again as soon as a turn returns.

The window holds the conversation exactly as the chat format renders it, answer included, so
a resumed session continues as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from ikv_local import interrupts
from ikv_local.ask import Answer, readable, refuse_too_long, respond
from ikv_local.branch import Fork, fork_open, rewind
from ikv_local.checkpoint import SessionError
from ikv_local.filing import Origin
from ikv_local.history import Turn
from ikv_local.recall import RecallSettings
from ikv_local.record import Role
from ikv_local.sampling import SamplingParams
from ikv_local.session import Session


@dataclass(frozen=True)
class ChatSettings:
    max_tokens: int = 512  # 0 or less: until the model ends its turn
    params: SamplingParams = field(default_factory=SamplingParams)
    recall: bool = True
    recall_every: int = 0
    recall_settings: RecallSettings = field(default_factory=RecallSettings)
    stops: tuple[str, ...] = ()  # where an answer ends besides the format's own stops


@dataclass(frozen=True)
class Memory:
    """Where the session's tokens are: what `/memory` shows."""

    n_ctx: int
    sink: int
    slot: int  # recalled tokens in the slot now
    slot_capacity: int
    recent: int
    recent_capacity: int
    archived: int
    tokens: int  # everything the session has read or said
    turns: int
    documents: int
    archive_bytes: int
    window_file_bytes: int

    @property
    def window_cells(self) -> int:
        return self.sink + self.slot + self.recent

    def to_dict(self) -> dict[str, int]:
        return {**self.__dict__, "window_cells": self.window_cells}


def memory(session: Session) -> Memory:
    window, layout = session.window, session.window.layout
    checkpoint = session.folder / "window.bin"
    return Memory(
        n_ctx=layout.n_ctx, sink=layout.sink, slot=window.slot_used, slot_capacity=layout.slot,
        recent=len(window.recent), recent_capacity=layout.recent_capacity,
        archived=window.archived, tokens=window.stream_end, turns=len(session.history),
        documents=len(session.meta.documents), archive_bytes=session.archive_bytes,
        window_file_bytes=checkpoint.stat().st_size if checkpoint.exists() else 0,
    )


def span_origin(session: Session, span: dict[str, object]) -> str:
    """Where a recalled span came from, in words: a document's name, or a chat turn."""
    source = str(span["source"])
    if source == "chat":
        turn = session.history.turn_at(int(span["start"]))  # type: ignore[call-overload]
        return f"chat, turn {turn.n}" if turn else "chat"
    return Path(source).name


class Chat:
    """Turns in a writable session."""

    def __init__(self, session: Session, settings: ChatSettings = ChatSettings()) -> None:
        if not session.options.writable:
            raise ValueError("a chat needs a writable session")
        self.session = session
        self.settings = settings

    @property
    def last(self) -> Turn | None:
        turns = self.session.history.turns
        return turns[-1] if turns else None

    def turn(self, user: str, *, on_text: Callable[[str], None] | None = None,
             cancel: Event | None = None) -> tuple[Turn, Answer]:
        """Answer, keep the turn in the window, log it and checkpoint the session.

        A turn too long for the window raises QuestionTooLong and leaves the session as it was.
        """
        user = readable(user, "the message")
        session, window, fmt = self.session, self.session.window, self.session.chat_format
        s = self.settings
        start, window_from = window.stream_end, window.archived + window.dropped
        answer = respond(session, user, fmt.user(user), fmt.stops + s.stops, recall=s.recall,
                         max_tokens=s.max_tokens, params=s.params, recall_every=s.recall_every,
                         settings=s.recall_settings, on_text=on_text, cancel=cancel)
        self._close(answer, Origin(Role.ASSISTANT, session.archive.source_id("chat"), start))
        turn = Turn(
            n=session.history.last + 1, user=user, answer=answer.text, start=start,
            end=window.stream_end, recalled=[sp.to_dict() for sp in answer.recalled],
            stopped=answer.stopped, tokens=answer.tokens,
            ttft_seconds=round(answer.first_token_seconds or 0.0, 4),
            recall_seconds=round(answer.recall_seconds, 4), tokens_per_s=answer.tokens_per_s,
            window_from=window_from,
        )
        self._keep(turn)
        return turn, answer

    def _keep(self, turn: Turn) -> None:
        """Log the turn and checkpoint the session, whole or not at all."""
        with interrupts.held():
            self.session.history.append(turn)
            self.session.index.refresh()
            self.session.save()

    def record(self, user: str, answer: str) -> Turn:
        """A turn said elsewhere (a client's earlier exchange the session has not seen): the
        window gets it as the chat format writes it, the log and a checkpoint follow, and
        nothing is generated. Too long for the window: QuestionTooLong, nothing kept."""
        session, window, fmt = self.session, self.session.window, self.session.chat_format
        engine = session.engine
        assert engine is not None
        user = self.check_question(user)
        start, window_from = window.stream_end, window.archived + window.dropped
        chat = session.archive.source_id("chat")
        said = (" " if fmt.user_after.endswith(":") else "") + answer.strip()
        tail = engine.tokenize(said) + engine.tokenize(fmt.assistant_after, special=True)
        window.clear_slot()
        window.append(engine.tokenize(fmt.user(user), special=True), Origin(Role.USER, chat, start))
        window.append(tail, Origin(Role.ASSISTANT, chat, start))
        turn = Turn(n=session.history.last + 1, user=user, answer=said, start=start,
                    end=window.stream_end, stopped="given", window_from=window_from)
        self._keep(turn)
        return turn

    # -- going back (branch.py) -----------------------------------------------------------

    def undo(self, n: int = 1) -> list[Turn]:
        """Take back the last n turns: window, archive and log as they were before them."""
        if n < 1:
            raise SessionError("/undo takes a number of turns, 1 or more")
        last = self.session.history.last
        if n > len(self.session.history):
            raise SessionError(f"/undo {n}: this session has {len(self.session.history)} "
                               "turn(s) to take back")
        return rewind(self.session, last - n, "undo")

    def retry(self, *, on_text: Callable[[str], None] | None = None,
              cancel: Event | None = None) -> tuple[Turn, Answer]:
        """A new answer to the last question; the old one is kept as an alternative."""
        last = self.take_back_last("retry")
        return self.turn(last.user, on_text=on_text, cancel=cancel)

    def edit(self, user: str, *, on_text: Callable[[str], None] | None = None,
             cancel: Event | None = None) -> tuple[Turn, Answer]:
        """The last question changed and answered again; the old turn is kept as an alternative."""
        self._last_or_refuse("edit")
        user = self.check_question(user)
        self.take_back_last("edit")
        return self.turn(user, on_text=on_text, cancel=cancel)

    def take_back_last(self, why: str) -> Turn:
        """The last turn taken back (kept as an alternative under `why`), before a new answer."""
        last = self._last_or_refuse(why)
        rewind(self.session, last.n - 1, why)
        return last

    def check_question(self, user: str) -> str:
        """The message as it will be read; QuestionTooLong before anything changes."""
        user = readable(user, "the message")
        engine = self.session.engine
        assert engine is not None
        prompt = engine.tokenize(self.session.chat_format.user(user), special=True)
        refuse_too_long(len(prompt), self.session.window.layout)
        return user

    def fork(self, new: str, at_turn: int | None = None) -> Fork:
        """A new session sharing everything up to now (or up to `at_turn`); this one goes
        on untouched."""
        return fork_open(self.session, new, at_turn)

    def _last_or_refuse(self, what: str) -> Turn:
        last = self.last
        if last is None or last.n != self.session.history.last:
            raise SessionError(f"/{what}: there is no turn to {what} yet")
        return last

    def _close(self, answer: Answer, origin: Origin) -> None:
        """Leave exactly the shown answer and the format's end of turn in the window.

        The window holds the first `answer.decoded` tokens sampled; a stop string may have
        begun inside them, and the last token sampled was never decoded.
        """
        engine, window = self.session.engine, self.session.window
        assert engine is not None
        out, text = answer.out, answer.text
        pieces = [engine.piece(t) for t in out]
        k, kept = len(out), ""
        while k:  # the longest run of sampled tokens whose text the shown answer begins with
            kept = b"".join(pieces[:k]).decode("utf-8", "replace")
            if text.startswith(kept):
                break
            k, kept = k - 1, ""
        if k < answer.decoded:
            extra = answer.decoded - k
            assert extra <= len(window.recent), "an answer's tail left the window"
            window.truncate(len(window.recent) - extra)
        rest = text[len(kept):]
        tail = out[answer.decoded : k] if k > answer.decoded else []
        tail += engine.tokenize(rest) if rest else []
        tail += engine.tokenize(self.session.chat_format.assistant_after, special=True)
        if tail:
            window.append(tail, origin)
