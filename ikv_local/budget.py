"""`--kv-budget`: the plan for one model, from its own facts and its measured cache damage.

The arithmetic is `plan`'s; the damage is `kvquality`'s, measured only when a quantized cache
would give a larger window than f16 (and then cached for the model). `plan_session` is the one
place that decides what a session is opened with: the plan for a new one, nothing for an old one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ikv_local.engine import Engine, EngineConfig
from ikv_local.kvquality import Damage, damage
from ikv_local.model_file import resolve_model
from ikv_local.plan import BudgetTooSmall, Option, choose, options
from ikv_local.session import session_exists
from ikv_local.sizes import format_size

MAX_KL = 0.02  # nats per token; q8_0 K keeps well inside it on the demo model, q4_0 K does not
DEFAULT_WINDOW = 2048  # tokens: a new session made with neither a window nor a budget


@dataclass(frozen=True)
class Plan:
    budget: int
    max_kl: float
    chosen: Option
    found: list[Option]  # every pair's largest window, largest first
    damage: dict[tuple[str, str], Damage]

    def summary(self) -> str:
        c = self.chosen
        d = self.damage.get((c.type_k, c.type_v))
        quality = ("exact (f16)" if d is None else
                   f"KL {d.kl_mean:.4f} nats/token, top-1 {d.top1_agree:.1%} vs f16")
        fa = ", flash attention" if c.flash_attn else ""
        return (f"plan for {format_size(self.budget)}: window {c.n_ctx:,} cells, "
                f"K {c.type_k} / V {c.type_v}{fa}, {format_size(c.kv_bytes)}; {quality}")

    def to_dict(self) -> dict[str, object]:
        def row(o: Option) -> dict[str, object]:
            d = self.damage.get((o.type_k, o.type_v))
            return {**o.to_dict(), "kl_p95": d.kl_p95 if d else None,
                    "top1_agree": d.top1_agree if d else None}
        return {"budget_bytes": self.budget, "max_kl": self.max_kl, "chosen": row(self.chosen),
                "options": [row(o) for o in self.found]}


def plan_for(
    engine: Engine,
    budget: int,
    *,
    max_kl: float = MAX_KL,
    n_ctx_cap: int | None = None,
    measure_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Plan:
    """The largest window inside `budget` whose cache types keep their damage within `max_kl`."""
    facts = engine.facts
    cap = min(facts.n_ctx_train or 1 << 30, n_ctx_cap or 1 << 30)
    found = options(facts.layers, budget, cap)
    f16 = next((o.n_ctx for o in found if o.type_k == o.type_v == "f16"), 0)
    wanted = [(o.type_k, o.type_v) for o in found if measure_all or o.n_ctx > f16]
    measured = damage(engine, wanted, progress) if wanted else {}
    quality = {("f16", "f16"): 0.0, **{pair: d.kl_mean for pair, d in measured.items()}}
    found = options(facts.layers, budget, cap, quality=quality)
    return Plan(budget, max_kl, choose(found, budget, max_kl), found, measured)


def plan_model(
    model: str | os.PathLike[str] | None,
    budget: int,
    *,
    max_kl: float | None = None,
    n_ctx_cap: int | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    measure_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Plan:
    """`plan_for` on a small engine of the model (its facts do not depend on the context).

    No model: the demo model; no `max_kl`: `MAX_KL`.
    """
    path = str(resolve_model(model))
    with Engine(path, EngineConfig(n_ctx=512, n_seq_max=1, n_threads=n_threads,
                                   n_gpu_layers=n_gpu_layers)) as engine:
        return plan_for(engine, budget, max_kl=MAX_KL if max_kl is None else max_kl,
                        n_ctx_cap=n_ctx_cap, measure_all=measure_all, progress=progress)


@dataclass(frozen=True)
class SessionShape:
    """The window and KV cache types to open a session with (a new one is made so)."""

    n_ctx: int
    type_k: str = "f16"
    type_v: str = "f16"
    plan: Plan | None = None  # the `--kv-budget` plan that chose them


def plan_session(
    name: str,
    model: str | None,
    budget: int | None,
    *,
    n_ctx: int | None = None,
    max_kl: float | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SessionShape:
    """A new session with a budget gets the plan's window (at most `n_ctx`) and cache types.

    Otherwise the window asked for, or 2048, at f16: an existing session keeps its own shape
    whatever is asked, so it is never planned.
    """
    if budget is None or session_exists(name):
        return SessionShape(n_ctx or DEFAULT_WINDOW)
    plan = plan_model(model, budget, max_kl=max_kl, n_ctx_cap=n_ctx, n_threads=n_threads,
                      n_gpu_layers=n_gpu_layers, progress=progress)
    return SessionShape(plan.chosen.n_ctx, plan.chosen.type_k, plan.chosen.type_v, plan)



def check_fits(name: str, kv_bytes: int, n_ctx: int, type_k: str, type_v: str, budget: int) -> None:
    """An existing session keeps the window and cache types it was made with."""
    if kv_bytes > budget:
        raise BudgetTooSmall(
            f"session {name!r} holds a {n_ctx:,}-cell window at K {type_k} / V {type_v} "
            f"({format_size(kv_bytes)}), over --kv-budget {format_size(budget)}; a session "
            "keeps the window it was made with: raise the budget or start a new session")
