"""The pass-key benchmark (as in InfiniteKV and LongLLaMA): a five-digit key buried at a
given depth in filler many times the window, then "What is the pass key?".

Each document is ingested once; ikv (recall) and the sliding window (the same saved window,
nothing recalled) answer from the same session. Full context answers where it fits, as the
upper bound. Hot KV memory is reported beside what full context would need.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ikv_local.ask import Answer, ask
from ikv_local.haystack import build, pass_key_needle
from ikv_local.ingest import ingest
from ikv_local.kvcost import kv_bytes
from ikv_local.paths import temporary_home
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session

INTRO = ("There is an important piece of information hidden inside a lot of irrelevant text. "
         "Find it and memorize it. I will quiz you about it.\n\n")
QUESTION = "What is the pass key?"
ANSWER_PREFIX = " The pass key is"
TOKENS_PER_SENTENCE = 15.2  # the demo model on haystack filler, measured


@dataclass
class Trial:
    multiple: int
    depth: float
    seed: int
    tokens: int
    key: str
    ikv: str
    ikv_ok: bool
    in_slot: bool
    sliding: str
    sliding_ok: bool
    full: str | None
    full_ok: bool | None
    ingest_s: float
    ingest_tokens_per_s: float
    recall_ms: float
    hot_kv_bytes: int
    full_kv_bytes: int
    window_cells: int
    window_state_bytes: int
    doc_sha256: str


def document(tokens: int, depth: float, seed: int) -> tuple[str, str]:
    """(text, key) of about `tokens` tokens with the key at `depth`."""
    needle = pass_key_needle(seed)
    hay = build(max(4, round(tokens / TOKENS_PER_SENTENCE)), [needle], [depth], seed=seed)
    return INTRO + hay.text, needle.answer


def _full_context(model: str | None, text: str, n_tokens: int) -> str:
    from ikv_local.engine import Engine, EngineConfig
    from ikv_local.model_file import resolve_model

    with Engine(resolve_model(model), EngineConfig(n_ctx=n_tokens + 64, n_seq_max=1)) as eng:
        toks = eng.tokenize(text + f"\n\nQuestion: {QUESTION}\nAnswer:{ANSWER_PREFIX}", add_bos=True)
        return eng.detokenize(list(eng.generate(toks, 0, SamplingParams.greedy(), 8)))


def run(
    multiples: list[int],
    depths: list[float],
    *,
    n_ctx: int = 2048,
    seeds: int = 1,
    full_max_tokens: int = 16384,
    model: str | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """One trial per (multiple, depth, seed); sessions live in a temporary IKV_HOME."""
    trials = []
    with temporary_home("ikv-passkey-") as home:
        for multiple in multiples:
            for depth in depths:
                for seed in range(seeds):
                    trials.append(_trial(model, n_ctx, multiple, depth, seed, full_max_tokens, home))
                    if on_trial:
                        on_trial(trials[-1])
    return trials


@dataclass
class SideBySide:
    ikv: Answer
    sliding: Answer
    hot_kv_bytes: int  # the window's allocated f16 cache (every layer full-size, so it shifts)
    full_kv_bytes: int  # full context as llama.cpp would hold it, sliding-window layers trimmed


def side_by_side(name: str, tokens: int, model: str | None = None,
                 n_threads: int | None = None) -> SideBySide:
    """The pass-key question with recall and without, from the same saved window."""
    with Session(name, OpenOptions(model=model, n_threads=n_threads, writable=False)) as s:
        a, b = (ask(s, QUESTION, answer_prefix=ANSWER_PREFIX, max_tokens=8, recall=r)
                for r in (True, False))
        assert s.engine is not None
        facts, n_ctx = s.engine.facts, s.window.layout.n_ctx
    return SideBySide(a, b, kv_bytes(facts.layers, n_ctx),
                      kv_bytes(facts.layers, tokens + 1, swa_window=facts.n_swa or None))


def _trial(model: str | None, n_ctx: int, multiple: int, depth: float, seed: int,
           full_max_tokens: int, home: Path) -> Trial:
    # every trial its own key and filler
    text, key = document(multiple * n_ctx, depth, 1000 * seed + 10 * multiple + round(depth * 10))
    path = home / f"doc-{multiple}-{depth}-{seed}.txt"
    path.write_text(text)
    name = f"pk-{multiple}-{round(depth * 100)}-{seed}"
    with Session(name, OpenOptions(model=model, create=True, n_ctx=n_ctx)) as s:
        t = time.perf_counter()
        result = ingest(s, [path])
        ingest_s = time.perf_counter() - t
        assert s.engine is not None
        state_bytes = s.engine.state_size(0)
    both = side_by_side(name, result.tokens, model)
    a, b = both.ikv, both.sliding
    full = _full_context(model, text, result.tokens + 32) if result.tokens <= full_max_tokens else None
    path.unlink()
    return Trial(
        multiple=multiple, depth=depth, seed=seed, tokens=result.tokens, key=key,
        ikv=a.text, ikv_ok=key in a.text, in_slot=any(key in sp.text for sp in a.recalled),
        sliding=b.text, sliding_ok=key in b.text,
        full=full, full_ok=None if full is None else key in full,
        ingest_s=round(ingest_s, 2), ingest_tokens_per_s=round(result.tokens / ingest_s, 1),
        recall_ms=round(a.recall_seconds * 1000, 1),
        hot_kv_bytes=both.hot_kv_bytes, full_kv_bytes=both.full_kv_bytes, window_cells=result.window_tokens,
        window_state_bytes=state_bytes,
        doc_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def summary(trials: list[Trial]) -> list[dict[str, object]]:
    """Per multiple: accuracy of ikv, the sliding window and full context."""
    rows = []
    for m in sorted({t.multiple for t in trials}):
        ts = [t for t in trials if t.multiple == m]
        full = [t.full_ok for t in ts if t.full_ok is not None]
        rows.append({
            "multiple": m,
            "tokens": round(sum(t.tokens for t in ts) / len(ts)),
            "trials": len(ts),
            "ikv": sum(t.ikv_ok for t in ts) / len(ts),
            "in_slot": sum(t.in_slot for t in ts) / len(ts),
            "sliding_window": sum(t.sliding_ok for t in ts) / len(ts),
            "full_context": sum(full) / len(full) if full else None,
            "hot_kv_mib": round(ts[0].hot_kv_bytes / 2**20, 1),
            "full_kv_mib": round(max(t.full_kv_bytes for t in ts) / 2**20, 1),
            "recall_ms_median": sorted(t.recall_ms for t in ts)[len(ts) // 2],
            "ingest_tokens_per_s_median": sorted(t.ingest_tokens_per_s for t in ts)[len(ts) // 2],
        })
    return rows


def trial_dicts(trials: list[Trial]) -> list[dict[str, object]]:
    return [asdict(t) for t in trials]


def format_table(rows: list[dict[str, object]]) -> list[str]:
    def pct(x: object) -> str:
        return "—" if x is None else f"{float(x) * 100:.0f}%"  # type: ignore[arg-type]

    out = ["| filler | tokens | ikv | sliding window | full context | hot KV | full-context KV | recall |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['multiple']}× | {r['tokens']:,} | {pct(r['ikv'])} | {pct(r['sliding_window'])} | "
            f"{pct(r['full_context'])} | {r['hot_kv_mib']} MiB | {r['full_kv_mib']} MiB | "
            f"{r['recall_ms_median']:.0f} ms |"
        )
    return out


def run_and_record(multiples: list[int], depths: list[float], *, n_ctx: int, seeds: int,
                   full_max_tokens: int, model: str | None, out_dir: str, command: str,
                   log: Callable[[str], None]) -> tuple[list[dict[str, object]], Path]:
    """Run, log each trial, write receipts/passkey.json; returns the summary and its path."""
    from ikv_local import receipt
    from ikv_local.model_file import resolve_model

    def each(t: Trial) -> None:
        log(f"{t.multiple:>3}x depth {t.depth:.0%} ({t.tokens:,} tokens): key {t.key} | "
            f"ikv {t.ikv.strip()!r} {'ok' if t.ikv_ok else 'MISS'} | sliding "
            f"{t.sliding.strip()!r} {'ok' if t.sliding_ok else 'miss'} | full "
            f"{'—' if t.full is None else ('ok' if t.full_ok else 'miss')} | "
            f"ingest {t.ingest_tokens_per_s:.0f} tok/s, recall {t.recall_ms:.0f} ms")

    trials = run(multiples, depths, n_ctx=n_ctx, seeds=seeds, full_max_tokens=full_max_tokens,
                 model=model, on_trial=each)
    rows = summary(trials)
    for line in format_table(rows):
        log(line)
    model_path = resolve_model(model)
    docs = hashlib.sha256("".join(t.doc_sha256 for t in trials).encode()).hexdigest()
    path = receipt.write(
        "passkey",
        {"n_ctx": n_ctx, "summary": rows, "trials": trial_dicts(trials)},
        {"model_sha256": receipt.file_sha256(model_path), "model": model_path.name,
         "documents_sha256": docs},
        command,
        out_dir=out_dir,
    )
    log(f"receipt: {path}")
    return rows, path
