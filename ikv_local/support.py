"""Can ikv keep memory for this model? One answer, for `ikv info` and before a session is made.

Memory needs three things of llama.cpp: a KV cache row per token (recurrent layers keep none),
a cache that shifts (the window rolls), and rotary embeddings ikv can undo (the key sketches
compare keys of text at any position).
"""

from __future__ import annotations

from ikv_local.errors import IkvError
from ikv_local.facts import ModelFacts
from ikv_local.rope import unsupported


def why_not(facts: ModelFacts) -> str | None:
    """The reason ikv cannot keep memory for this model, or None when it can."""
    if facts.recurrent or facts.hybrid:
        return "its recurrent layers keep no per-token KV cache to archive"
    why = unsupported(facts.rope_type, facts.rope_scaling)
    if why is None and not facts.can_shift:
        why = "llama.cpp cannot shift its KV cache, so the window cannot roll"
    return why


def verdict(facts: ModelFacts) -> str:
    """One line: yes and how, or no and why."""
    why = why_not(facts)
    if why:
        return f"no: {why}"
    how = f"{facts.rope_type} rope"
    if facts.rope.factors_from:
        how += f" with {facts.rope.factors_from.removesuffix('.weight')}"
    if facts.rope.ext_factor:
        how += ", YaRN"
    elif any(lay.rope_scale != 1.0 for lay in facts.layers):
        how += ", linear scaling"
    nope = [lay.index for lay in facts.layers if not lay.rope]
    if nope:
        how += f"; {len(nope)} no-rope layers left out of the sketch"
    return f"yes: keys de-roped ({how}), the KV cache shifts"


def check(facts: ModelFacts) -> None:
    why = why_not(facts)
    if why:
        raise IkvError(f"ikv cannot keep memory for {facts.name or facts.arch}: {why}")
