"""Recall: from the current turn's keys to archived spans worth re-reading.

The question is decoded beside a copy of the sink (as the sketch was calibrated: BOS, then
the question), its de-roped keys become query sketches, the index returns the nearest
records, every record of a rare question token (a name) joins them, each grows to whole
sentences, and the spans are re-ranked by how well all of the question's tokens find a
partner in them and by the question's token ids they hold. The chosen spans, in their
original order, become the tokens of the recall slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ikv_local.archive import Archive
from ikv_local.engine import Engine
from ikv_local.index import SketchIndex
from ikv_local.readout import read_cells
from ikv_local.record import Flag
from ikv_local.sequences import RECALL_SEQ, WINDOW_SEQ
from ikv_local.sketch import SketchSpec, hamming, unit_keys, vectors
from ikv_local.sketch import encode as encode_sketch

MAX_QUERY_TOKENS = 128
HALF_BITS = 256  # Hamming distance of unrelated sketches (512 bits)
SLOT_HEADER = "Earlier text, recalled:\n"
SLOT_GAP = "\n…\n"
SLOT_FOOTER = "\n(end of recalled text)\n\n"
# a small model copies the slot's framing into answers; an answer ends where it would begin
SLOT_MARKERS = (SLOT_HEADER.strip(), SLOT_FOOTER.strip())


@dataclass(frozen=True)
class RecallSettings:
    k: int = 64  # index hits per question
    span_max: int = 64  # tokens per span
    # each weight measured on real prose in scripts/recall_prose.py (docs/memory.md)
    lexical: float = 0.5  # the IDF-weighted share of the question's token ids in a span
    rarity: float = 0.0  # question tokens weigh idf**rarity in the key rerank: measured no gain
    rare_hits: int = 8  # a question token archived at most this often: each occurrence a candidate
    keep_ratio: float = 0.0  # spans under this share of the best score are left out: no gain
    slot_max: int | None = None  # fill at most this much of the slot; None: all of it


@dataclass(frozen=True)
class Span:
    start: int  # first record id
    end: int  # one past the last record id
    position: int  # stream position of the first token
    score: float
    source: str
    tokens: list[int]
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"start": self.position, "end": self.position + (self.end - self.start),
                "score": round(self.score, 4), "source": self.source, "text": self.text}


@contextmanager
def decoded_beside_the_sink(engine: Engine, sink: int, tokens: list[int],
                            after: int = 0) -> Iterator[None]:
    """`tokens` at [sink + after, ...) on the recall sequence, after a copy of the window's sink
    and of the `after` slot cells that precede them.

    They see the sink and each other, nothing recent: how the sketch was calibrated and how
    the recall slot is filled. The recall sequence is emptied again when the block ends.
    """
    engine.seq_rm(RECALL_SEQ)
    engine.seq_cp(WINDOW_SEQ, RECALL_SEQ, 0, sink + after)
    try:
        engine.decode(tokens, sink + after, seq=RECALL_SEQ, logits_last=False)
        yield
    finally:
        engine.seq_rm(RECALL_SEQ)


def query_sketches(engine: Engine, spec: SketchSpec, sink: int, tokens: list[int]) -> np.ndarray:
    """Sketches of the question's keys, decoded after the sink on the recall sequence."""
    tokens = tokens[-MAX_QUERY_TOKENS:]
    if not tokens:
        return np.zeros((0, spec.bits // 8), np.uint8)
    with decoded_beside_the_sink(engine, sink, tokens):
        state = read_cells(engine, sink, sink + len(tokens), seq=RECALL_SEQ)
    _, keys = unit_keys(state, engine.facts, spec.units)
    return encode_sketch(vectors(keys, spec), spec)


def _sentence(flags: np.ndarray, sources: np.ndarray, lo: int, hit: int, span_max: int) -> tuple[int, int]:
    """Grow [hit, hit+1) to whole sentences within one source, at most span_max tokens.

    `flags`/`sources` cover record ids [lo, lo + len); the result is in record ids.
    """
    n = len(flags)
    h = hit - lo
    same = sources == sources[h]
    starts = np.flatnonzero((flags & Flag.SENTENCE_START).astype(bool) | ~same)
    left = starts[starts <= h]
    right = starts[starts > h]
    a = int(left[-1]) if len(left) else max(0, h - span_max // 2)
    b = int(right[0]) if len(right) else min(n, h + span_max // 2)
    if b - a > span_max:  # one long sentence: a window around the hit
        a = max(a, h - span_max // 2)
        b = min(b, a + span_max)
    # then whole neighbouring sentences while they fit: the one after first, then before
    for _ in range(4):
        grew = False
        after = right[right > b]
        if len(after) and same[b : after[0]].all() and after[0] - a <= span_max:
            b, grew = int(after[0]), True
        prev = left[left < a]
        if len(prev) and same[prev[-1]:a].all() and b - int(prev[-1]) <= span_max:
            a, grew = int(prev[-1]), True
        if not grew:
            break
    return lo + a, lo + b


def _idf(archive: Archive) -> np.ndarray:
    return np.log((len(archive) + 1) / (archive.token_counts() + 1.0))


def find_spans(
    archive: Archive,
    index: SketchIndex,
    queries: np.ndarray,
    budget: int,
    settings: RecallSettings = RecallSettings(),
    query_tokens: list[int] | None = None,
    limit: int | None = None,
) -> list[Span]:
    """Spans for the slot, best first until `budget` tokens; returned in original order.

    `limit` hides records at or past that id (a window restored from an older checkpoint).
    """
    n = len(archive) if limit is None else min(limit, len(archive))
    if n == 0 or len(queries) == 0 or budget <= 0:
        return []
    candidates = candidate_spans(archive, index, queries, n, settings, query_tokens)
    if not candidates:
        return []
    scores = score_spans(archive, candidates, queries, settings, query_tokens)
    if settings.keep_ratio:
        keep = scores >= settings.keep_ratio * scores.max()
        candidates = [c for c, k in zip(candidates, keep) if k]
        scores = scores[keep]
    recs = archive.records()
    names = archive.sources()
    chosen = []
    for a, b, score in select_spans(candidates, scores, archive.usable[:n], budget):
        part = recs[a:b]
        source = int(part["source"][0])
        chosen.append(Span(a, b, int(part["position"][0]), score,
                           names[source] if source < len(names) else f"source {source}",
                           [int(t) for t in part["token"]], ""))
    return chosen


def candidate_spans(archive: Archive, index: SketchIndex, queries: np.ndarray, n: int,
                    settings: RecallSettings,
                    query_tokens: list[int] | None = None) -> list[tuple[int, int]]:
    """The index's hits among the first `n` records, and with `settings.rare_hits` every
    occurrence of the question's rare tokens, each grown to whole sentences; [a, b) in record
    ids, each once, in order."""
    hits = index.search(queries, k=settings.k)
    hit_ids = hits.ids[hits.ids < n]
    if settings.rare_hits and query_tokens:
        hit_ids = np.concatenate([hit_ids, _rare_occurrences(archive, query_tokens, n,
                                                             settings.rare_hits)])
    recs = archive.records()
    span_max = settings.span_max
    spans: dict[tuple[int, int], None] = {}
    for h in hit_ids:
        lo = max(0, int(h) - span_max)
        hi = min(n, int(h) + span_max + 1)
        window = recs[lo:hi]
        spans[_sentence(np.asarray(window["flags"]), np.asarray(window["source"]), lo, int(h), span_max)] = None
    return sorted(spans)


def _rare_occurrences(archive: Archive, query_tokens: list[int], n: int, most: int) -> np.ndarray:
    counts = archive.token_counts()
    q = np.unique(np.asarray(query_tokens, dtype=np.int64))
    q = q[q < len(counts)]
    rare = q[(counts[q] > 0) & (counts[q] <= most)]
    if not len(rare):
        return np.zeros(0, np.int64)
    tokens = np.asarray(archive.records()["token"][:n])
    return np.flatnonzero(np.isin(tokens, rare))


def score_spans(archive: Archive, candidates: list[tuple[int, int]], queries: np.ndarray,
                settings: RecallSettings, query_tokens: list[int] | None) -> np.ndarray:
    """Per candidate span, how well it answers the question (higher is better).

    How the question's keys find partners in the span's sketches (each question token
    weighed by its rarity in the archive, with `settings.rarity`), plus, with
    `settings.lexical`, how many of the question's rarer tokens it contains.
    """
    weights = None
    if settings.rarity and query_tokens:
        idf = _idf(archive)
        ids = np.asarray(query_tokens[-len(queries):], dtype=np.int64)
        known = ids < len(idf)
        weights = np.where(known, idf[np.minimum(ids, len(idf) - 1)], np.log(len(archive) + 1.0))
        weights = np.maximum(weights, 0.0) ** settings.rarity
    scores = _rerank(archive, candidates, queries, weights)
    if settings.lexical and query_tokens:
        scores = scores + settings.lexical * _lexical(archive, candidates, query_tokens)
    return scores


def select_spans(candidates: list[tuple[int, int]], scores: np.ndarray, usable: np.ndarray,
                 budget: int) -> list[tuple[int, int, float]]:
    """The slot's share of the candidates: best score first until `budget` tokens are spent.

    Overlapping picks pay only for their new tokens; a span with any record that failed its
    checksum (`usable` false) is never picked. Picks that overlap or touch are merged, each
    merged span keeps the best score inside it; [a, b, score] in original order.
    """
    covered = np.zeros(len(usable), bool)
    picked: list[tuple[int, int, float]] = []
    used = 0
    for i in np.argsort(-scores, kind="stable"):
        a, b = candidates[i]
        if not usable[a:b].all():
            continue
        new = int((~covered[a:b]).sum())
        if new == 0 or used + new > budget:
            continue
        covered[a:b] = True
        used += new
        picked.append((a, b, float(scores[i])))
    return [(a, b, max(sc for x, y, sc in picked if a <= x and y <= b))
            for a, b in _merge(sorted((a, b) for a, b, _ in picked))]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _rerank(archive: Archive, spans: list[tuple[int, int]], queries: np.ndarray,
            weights: np.ndarray | None = None) -> np.ndarray:
    """Per span: mean over query tokens (weighted, when given) of their best similarity inside
    the span."""
    if weights is None or weights.sum() <= 0:
        weights = np.ones(len(queries))
    weights = weights / weights.sum()
    ids = np.concatenate([np.arange(a, b) for a, b in spans])
    words = archive.sketch_words(ids).view(np.uint8).reshape(len(ids), -1)
    d = hamming(words, np.ascontiguousarray(queries))  # [n_ids, n_queries]
    sim = np.clip(1.0 - d / HALF_BITS, 0.0, None)
    out = np.empty(len(spans))
    at = 0
    for i, (a, b) in enumerate(spans):
        out[i] = sim[at : at + b - a].max(axis=0) @ weights
        at += b - a
    return out


def _lexical(archive: Archive, spans: list[tuple[int, int]], query_tokens: list[int]) -> np.ndarray:
    """Per span: the IDF-weighted share of distinct question tokens it contains."""
    idf = _idf(archive)
    q = np.unique(np.asarray(query_tokens, dtype=np.int64))
    q = q[q < len(idf)]
    w = idf[q]
    total = w.sum()
    recs = archive.records()
    out = np.zeros(len(spans))
    if total <= 0:
        return out
    for i, (a, b) in enumerate(spans):
        present = np.isin(q, np.asarray(recs["token"][a:b], dtype=np.int64))
        out[i] = w[present].sum() / total
    return out


def recalled_text(spans: list[Span]) -> str:
    """The spans framed as earlier text, as the slot frames them (for a prompt to hold)."""
    return SLOT_HEADER + SLOT_GAP.join(s.text for s in spans) + SLOT_FOOTER if spans else ""


def slot_tokens(engine: Engine, spans: list[Span], capacity: int) -> tuple[list[int], list[Span]]:
    """The slot's tokens: the spans framed as earlier text; spans that do not fit are left out."""
    head = engine.tokenize(SLOT_HEADER)
    gap = engine.tokenize(SLOT_GAP)
    foot = engine.tokenize(SLOT_FOOTER)
    out = list(head)
    kept = []
    for span in spans:
        extra = (gap if kept else []) + span.tokens
        if len(out) + len(extra) + len(foot) > capacity:
            continue
        out += extra
        kept.append(span)
    if not kept:
        return [], []
    text = [Span(s.start, s.end, s.position, s.score, s.source, s.tokens,
                 engine.detokenize(s.tokens)) for s in kept]
    return out + foot, text
