"""`ikv search`: find what was said or read in any session, by words and by meaning.

Nothing a session ever held was dropped, so everything can be found again:
- words: the phrase in the turn log and in the turns taken back by /retry, /edit or /undo
  (case-insensitive), and as token ids in the archived
  records and the window's recent tokens (the phrase tokenized as typed, lower-case and
  capitalised, with and without a leading space), which finds documents too;
- meaning: the same key sketches and scoring as recall (`recall.find_spans`), for passages
  that share the question's sense but not its words.
A hit names its session, the turn or document it is in, the date, and the passage with the
query's words marked. Sessions are opened read-only; nothing is changed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ikv_local.checkpoint import SessionError
from ikv_local.errors import IkvError
from ikv_local.history import Turn, alternatives
from ikv_local.recall import RecallSettings, find_spans, query_sketches
from ikv_local.record import Role
from ikv_local.session import OpenOptions, Session, list_sessions

READ_ONLY = OpenOptions(writable=False)  # frozen: one default shared by every call

PASSAGE = 48  # tokens of context around a phrase found in the records
WORDS_SCORE = 1.0  # an exact phrase outranks any sketch score (those are below 1)
MEANING_FLOOR = 0.4  # below it, not shown: a choice by hand (docs/chat.md, "Search")
SHOWN = 240  # characters of a passage
_COMMON = {"the", "and", "what", "who", "where", "when", "which", "was", "were", "are", "that",
           "this", "with", "for", "from", "about", "how", "does", "did", "has", "have", "had",
           "you", "your", "not", "but", "his", "her", "its", "our", "their", "they", "she"}


class NoHits(IkvError):
    exit_code = 1


@dataclass
class Hit:
    session: str
    where: str  # "chat, turn 12" or a document's name
    date: str
    start: int  # stream positions of the passage
    end: int
    text: str
    score: float
    how: str  # words, meaning
    turn: int | None = None
    marks: list[tuple[int, int]] = field(default_factory=list)  # character ranges of query words

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def marks(text: str, query: str) -> list[tuple[int, int]]:
    """Where the query's telling words (whole words, 3 letters or more, not the commonest)
    are in `text`."""
    words = {w for w in re.findall(r"\w+", query.lower()) if len(w) >= 3 and w not in _COMMON}
    if not words:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                         + r")\b", re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _shown(text: str, query: str) -> tuple[str, list[tuple[int, int]]]:
    """At most SHOWN characters of a passage, around its first marked word."""
    text = " ".join(text.split())
    found = marks(text, query)
    if len(text) > SHOWN:
        at = found[0][0] if found else 0
        start = max(0, min(at - SHOWN // 3, len(text) - SHOWN))
        text = ("…" if start else "") + text[start : start + SHOWN] + ("…" if start + SHOWN < len(text) else "")
        found = marks(text, query)
    return text, found


def _turn_hits(session: Session, query: str) -> Iterator[Hit]:
    """The phrase in the turn log, then in the turns taken back (kept as alternatives)."""
    needle = query.lower()
    taken = [(a.turn, f" (taken back: {a.why})") for a in alternatives(session.folder)]
    for turn, note in [(t, "") for t in session.history.turns] + taken:
        for who, text in (("you", turn.user), ("ikv", turn.answer)):
            if needle in text.lower():
                passage, found = _shown(f"{who}: {text}", query)
                yield Hit(session.name, f"chat, turn {turn.n}{note}", turn.time, turn.start,
                          turn.end, passage, WORDS_SCORE, "words", None if note else turn.n, found)
                break


def _phrase_variants(session: Session, query: str) -> list[np.ndarray]:
    engine = session.engine
    assert engine is not None
    out, seen = [], set()
    for form in {query, query.lower(), query[:1].upper() + query[1:]}:
        for text in (form, " " + form):
            ids = tuple(engine.tokenize(text))
            if ids and ids not in seen:
                seen.add(ids)
                out.append(np.asarray(ids, np.int64))
    return out


def _find_phrase(tokens: np.ndarray, phrase: np.ndarray) -> np.ndarray:
    """Start indices of `phrase` in `tokens`."""
    n = len(phrase)
    if len(tokens) < n:
        return np.zeros(0, np.int64)
    at = np.flatnonzero(tokens[: len(tokens) - n + 1] == phrase[0])
    for k in range(1, n):
        at = at[tokens[at + k] == phrase[k]]
    return at


def _stream_hits(session: Session, query: str, most: int) -> Iterator[Hit]:
    """The phrase as token ids in the records and the window's recent tokens (documents)."""
    window = session.window
    records = session.archive.records()
    archived = np.asarray(records["token"], np.int64)
    recent = np.asarray(window.recent.tokens, np.int64)
    first_recent = window.archived + window.dropped
    found: set[int] = set()
    for phrase in _phrase_variants(session, query):
        for where, tokens in (("archive", archived), ("window", recent)):
            for i in _find_phrase(tokens, phrase)[:most]:
                pos = int(records["position"][i]) if where == "archive" else first_recent + int(i)
                if any(abs(pos - f) < PASSAGE for f in found):
                    continue
                found.add(pos)
                yield _passage(session, pos, len(phrase), query, "words", WORDS_SCORE)


def _passage(session: Session, pos: int, n: int, query: str, how: str, score: float) -> Hit:
    from ikv_local.branch import stream_slice

    window = session.window
    lo = max(window.dropped, pos - PASSAGE // 2)
    hi = min(window.stream_end, pos + n + PASSAGE // 2)
    part = stream_slice(session, lo, hi)
    engine = session.engine
    assert engine is not None
    text, found = _shown(engine.detokenize(part["tokens"]), query)
    where, date, turn = _origin(session, pos, part["roles"][pos - lo], part["sources"][pos - lo])
    return Hit(session.name, where, date, lo, hi, text, score, how, turn, found)


def _origin(session: Session, pos: int, role: int, source: int) -> tuple[str, str, int | None]:
    """Where a stream position came from: (name, date, turn number)."""
    if role in (int(Role.USER), int(Role.ASSISTANT)):
        turn: Turn | None = session.history.turn_at(pos)
        return (f"chat, turn {turn.n}", turn.time, turn.n) if turn else ("chat", "", None)
    names = session.archive.sources()
    name = names[source] if source < len(names) else f"source {source}"
    added = next((d.added for d in session.meta.documents if d.path == name), "")
    return Path(name).name, added, None


def _meaning_hits(session: Session, query: str, most: int) -> Iterator[Hit]:
    engine, window = session.engine, session.window
    assert engine is not None
    if not window.archived:
        return
    tokens = engine.tokenize(query)
    queries = query_sketches(engine, session.spec, window.layout.sink, tokens)
    spans = find_spans(session.archive, session.index, queries, most * 64, RecallSettings(),
                       tokens, limit=window.archived)
    records = session.archive.records()
    for span in sorted(spans, key=lambda s: -s.score)[:most]:
        if span.score < MEANING_FLOOR:
            break
        text, found = _shown(engine.detokenize(span.tokens), query)
        where, date, turn = _origin(session, span.position, int(records["role"][span.start]),
                                    int(records["source"][span.start]))
        yield Hit(session.name, where, date, span.position, span.position + len(span.tokens),
                  text, float(span.score), "meaning", turn, found)


def search_session(session: Session, query: str, most: int = 10) -> list[Hit]:
    """The best hits in one open session, phrase hits first, one per turn."""
    hits: list[Hit] = []
    turns: set[int] = set()

    def add(hit: Hit) -> None:
        if hit.turn is not None:
            if hit.turn in turns:
                return
            turns.add(hit.turn)
        elif any(h.turn is None and h.start < hit.end and hit.start < h.end for h in hits):
            return
        hits.append(hit)

    for hit in _turn_hits(session, query):
        add(hit)
    for hit in _stream_hits(session, query, most):
        add(hit)
    for hit in _meaning_hits(session, query, most):
        add(hit)
    hits.sort(key=lambda h: (-h.score, h.start))
    return hits[:most]


@dataclass
class Found:
    hits: list[Hit]
    searched: list[str]
    skipped: list[str]  # "NAME: why"


def search(query: str, names: list[str] | None = None, *, most: int = 10,
           options: OpenOptions = READ_ONLY) -> Found:
    """Search the named sessions (every session when None), best hits first."""
    if not query.strip():
        raise SessionError("search for what? give some words")
    if names is None:
        names = [i.name for i in list_sessions() if i.problem is None]
    found = Found([], [], [])
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Session(name, options) as s:
                    found.hits += search_session(s, query, most)
            found.searched.append(name)
        except IkvError as exc:
            if len(names) == 1:
                raise
            found.skipped.append(f"{name}: {exc}")
    found.hits.sort(key=lambda h: (-h.score, h.session, h.start))
    found.hits = found.hits[:most]
    return found
