"""One question against a session: recall into the slot, then answer in the window.

The same loop serves `ikv ask` (the turn is thrown away afterwards) and chat (it is kept).
Without recall the window is exactly llama.cpp's context shift: sink kept, oldest dropped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Event
from typing import Literal

from ikv_local.errors import IkvError, NoRoom
from ikv_local.filing import Origin
from ikv_local.prompt import Message
from ikv_local.recall import (
    SLOT_MARKERS,
    RecallSettings,
    Span,
    find_spans,
    query_sketches,
    recalled_text,
    slot_tokens,
)
from ikv_local.record import Role
from ikv_local.sampling import SamplingParams
from ikv_local.session import Session
from ikv_local.stream import AnswerText
from ikv_local.window import Layout

SLOT_FRAMING = 32  # tokens the slot's header, gaps and footer may take
GREEDY = SamplingParams.greedy()  # both frozen: one default shared by every call
DEFAULT_RECALL = RecallSettings()


class QuestionTooLong(IkvError):
    """A question the window cannot hold whole with room to answer: refused before any work
    (a 100 KB question once ran for minutes with no output)."""

    exit_code = 2


class UndecodableText(UserWarning):
    """Text that was not valid UTF-8 reached ikv; it was read with U+FFFD in its place."""


warnings.simplefilter("always", UndecodableText)  # every such question says so, not the first


def question_cap(layout: Layout) -> int:
    """The most tokens a question may take (as the prompt format writes it): the window's room
    for recent text, less one block, so the whole question is in the window while recall is
    searched for it and while at least a block of answer is written after it."""
    return layout.recent_capacity - layout.block


def refuse_too_long(prompt_tokens: int, layout: Layout) -> None:
    """Raise QuestionTooLong for a prompt over `question_cap`."""
    cap = question_cap(layout)
    if prompt_tokens > cap:
        raise QuestionTooLong(
            f"the question is {prompt_tokens:,} tokens; in this session's window of "
            f"{layout.n_ctx:,} a question may take at most {cap:,} (the room for recent "
            f"text, less {layout.block:,} for the answer)")


def readable(text: str, what: str = "the question") -> str:
    """`text` with any bytes that were not UTF-8 read as U+FFFD, and a warning saying so.

    Python hands such bytes over as lone surrogates (from argv, or stdin read with
    surrogateescape), which the tokenizer cannot encode. They are replaced rather than
    refused: one stray byte in a pasted question should not cost the question, and the
    warning on stderr says what the model was shown instead.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that never were bytes
        fixed = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    n = fixed.count("\ufffd") - text.count("\ufffd")
    warnings.warn(f"{what} is not valid UTF-8: {n:,} bad byte(s) read as U+FFFD (\ufffd)",
                  UndecodableText, stacklevel=2)
    return fixed


@dataclass
class Answer:
    text: str
    recalled: list[Span]
    window_tokens: int
    archived_tokens: int
    seconds: float
    recall_seconds: float  # search + re-injection, all refreshes together
    tokens: int  # generated
    decode_seconds: float
    first_token_seconds: float | None = None  # from the question to the first token sampled
    stopped: str = "eog"  # eog, stop (a stop string), limit, cancel
    out: list[int] = field(default_factory=list, repr=False)  # the tokens sampled
    decoded: int = 0  # how many of `out` the window holds

    def to_dict(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "recalled": [s.to_dict() for s in self.recalled],
            "window_tokens": self.window_tokens,
            "archived_tokens": self.archived_tokens,
            "seconds": round(self.seconds, 3),
            "recall_seconds": round(self.recall_seconds, 4),
            "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s,
            "ttft_seconds": None if self.first_token_seconds is None else round(self.first_token_seconds, 4),
            "stopped": self.stopped,
        }

    @property
    def tokens_per_s(self) -> float | None:
        return round(self.tokens / self.decode_seconds, 2) if self.decode_seconds > 0 and self.tokens else None


PLAIN_STOPS = ("\nQuestion:", "\nUser:")


def question_prompt(session: Session, question: str,
                    recalled: str = "") -> tuple[str, tuple[str, ...]]:
    """The turn as the model expects it, and where its answer ends besides end-of-generation.

    With a chat template, the template; without one, a plain Question/Answer cue, which a
    base model would otherwise continue with further questions of its own. `recalled` (the
    framed spans, `recalled_text`) goes right before the question: inside the user's message
    with a template, before the cue without one.
    """
    engine = session.engine
    assert engine is not None
    if engine.chat_template():
        content = f"{recalled.rstrip()}\n\n{question}" if recalled else question
        text = engine.format_chat([Message("user", content)])
        bos = engine.piece(engine.bos).decode("utf-8", "replace")
        return (text[len(bos):] if bos and text.startswith(bos) else text), ()
    before = recalled.rstrip("\n")
    return f"{before}\n\nQuestion: {question.strip()}\nAnswer:", PLAIN_STOPS


def recall_spans(session: Session, query_text: str,
                 settings: RecallSettings) -> tuple[list[int], list[Span]]:
    """The slot's tokens and spans for this query (nothing is changed)."""
    engine, window = session.engine, session.window
    assert engine is not None
    query = engine.tokenize(query_text)
    queries = query_sketches(engine, session.spec, window.layout.sink, query)
    slot = min(window.layout.slot, settings.slot_max or window.layout.slot)
    spans = find_spans(session.archive, session.index, queries, slot - SLOT_FRAMING, settings,
                       query, limit=window.archived)
    return slot_tokens(engine, spans, slot)


def recall_into_slot(session: Session, query_text: str, settings: RecallSettings) -> list[Span]:
    """Recall for `query_text` into the slot. The query is decoded beside the sink while the
    slot still holds its last spans (the new ones often start the same); a long question in a
    full window finds no free cell then, and takes the slot's."""
    try:
        tokens, spans = recall_spans(session, query_text, settings)
    except NoRoom:
        session.window.clear_slot()
        tokens, spans = recall_spans(session, query_text, settings)
    session.window.fill_slot(tokens)
    return spans


def ask(
    session: Session,
    question: str,
    *,
    recall: bool = True,
    max_tokens: int = 128,
    params: SamplingParams = GREEDY,
    answer_prefix: str = "",
    recall_every: int = 0,
    settings: RecallSettings = DEFAULT_RECALL,
    on_text: Callable[[str], None] | None = None,
    keep: bool = False,
    place: Literal["auto", "slot", "question"] = "auto",
) -> Answer:
    """Answer `question`; `answer_prefix` is put in the model's mouth (benchmarks use it).

    Unless `keep`, the window is put back as it was, so every question meets the same window.
    `place` says where what is recalled is read: "question" (right before it), "slot" (the
    recall slot, as a chat turn reads it) or "auto": before the question for a model with no
    chat template, in the slot for one with a template (measured, docs/memory.md). `keep`
    and `recall_every` (a refresh while answering needs the slot) always use the slot.
    """
    question = readable(question)
    window = session.window
    start = (len(window.recent), window.dropped, window.archived)
    prompt_text, stops = question_prompt(session, question)
    if place not in ("auto", "slot", "question"):
        raise ValueError(f"place: {place!r}")
    if place == "auto":
        place = "slot" if stops != PLAIN_STOPS else "question"
    beside = (None if place == "slot" or recall_every or keep else
              lambda recalled: question_prompt(session, question, recalled)[0] + answer_prefix)
    try:
        return respond(session, question, prompt_text + answer_prefix, stops, recall=recall,
                       max_tokens=max_tokens, params=params, recall_every=recall_every,
                       settings=settings, on_text=on_text, beside_question=beside,
                       paragraph=stops == PLAIN_STOPS)  # a base model: its answer is one paragraph
    finally:
        if not keep:
            if (window.dropped, window.archived) == start[1:]:
                window.truncate(start[0])
                window.clear_slot()
            else:
                session.rollback()


def respond(
    session: Session,
    query: str,
    prompt_text: str,
    stops: tuple[str, ...],
    *,
    recall: bool = True,
    max_tokens: int = 128,
    params: SamplingParams = GREEDY,
    recall_every: int = 0,
    settings: RecallSettings = DEFAULT_RECALL,
    on_text: Callable[[str], None] | None = None,
    cancel: Event | None = None,
    paragraph: bool = False,
    beside_question: Callable[[str], str] | None = None,
) -> Answer:
    """Recall for `query`, append the prompt, and generate into the window.

    With `beside_question`, nothing goes into the slot: the recalled text is decoded in the
    window right before the question, as `beside_question(recalled_text)` writes the prompt,
    in the slot's cells lent to the window; the caller takes the turn back afterwards.

    The text is cut before any stop string or the slot's framing (`AnswerText`), and with
    `paragraph` at the first blank line after some text; the last token
    sampled is not decoded (nothing would read its logits), so `Answer.decoded` says how many
    of `Answer.out` the window holds. `max_tokens` of 0 or less means until end-of-generation.
    A prompt longer than `question_cap` raises QuestionTooLong before anything is read or
    changed.
    """
    engine, window = session.engine, session.window
    assert engine is not None
    t0 = time.perf_counter()
    prompt = engine.tokenize(prompt_text, special=True)
    refuse_too_long(len(prompt), window.layout)
    spans: list[Span] = []
    recall_s = 0.0
    # the query is decoded beside the sink while the window holds its cells: age what the
    # prompt will push out anyway (recall_into_slot frees the slot too if that is not enough)
    window.make_room(len(prompt))
    if not (recall and window.archived and beside_question is None):
        window.clear_slot()  # nothing goes into it, or its cells are lent to the question
    if recall and window.archived:
        if beside_question is None:
            spans = recall_into_slot(session, query, settings)
        else:
            spans = recall_spans(session, query, settings)[1]
            if spans:
                prompt = engine.tokenize(beside_question(recalled_text(spans)), special=True)
        recall_s = time.perf_counter() - t0
    chat = session.archive.source_id("chat") if session.options.writable else 0
    segment = window.stream_end
    # the recalled text takes the slot's cells; without any, the window is as llama.cpp's
    with window.lending(window.layout.slot if beside_question and spans else 0):
        window.append(prompt, Origin(Role.USER, chat, segment), logits_last=True)
        out: list[int] = []
        decoded = 0
        answer = AnswerText((*stops, *SLOT_MARKERS), paragraph=paragraph)
        refresh_s = 0.0
        first_s: float | None = None
        stopped = "limit"
        limit = max_tokens if max_tokens > 0 else 1 << 62
        t_dec = time.perf_counter()
        with engine.sampler(params, window.recent.tokens) as sample:
            for i in range(limit):
                if cancel is not None and cancel.is_set():
                    stopped = "cancel"
                    break
                token = sample()
                if first_s is None:
                    first_s = time.perf_counter() - t0
                if engine.is_eog(token):
                    stopped = "eog"
                    break
                out.append(token)
                shown = answer.feed(engine.piece(token))
                if on_text and shown:
                    on_text(shown)
                if answer.stopped:
                    stopped = "stop"
                    break
                if i + 1 == limit:
                    break
                if recall_every and recall and (i + 1) % recall_every == 0 and window.archived:
                    t_r = time.perf_counter()
                    spans = recall_into_slot(session, query + engine.detokenize(out), settings)
                    refresh_s += time.perf_counter() - t_r
                window.append([token], Origin(Role.ASSISTANT, chat, segment), logits_last=True)
                decoded += 1
    rest = answer.finish()
    if on_text and rest:
        on_text(rest)
    dec_s = time.perf_counter() - t_dec - refresh_s
    return Answer(
        text=answer.text,
        recalled=spans,
        window_tokens=window.cells,
        archived_tokens=window.archived,
        seconds=time.perf_counter() - t0,
        recall_seconds=recall_s + refresh_s,
        tokens=len(out),
        decode_seconds=dec_s,
        first_token_seconds=first_s,
        stopped=stopped,
        out=out,
        decoded=decoded,
    )
