"""The options the `ikv` commands share, defined once, and the checks that read them.

Nothing here loads a model: `ikv --help` imports this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from ikv_local.session import Session

ModelArg = Annotated[
    Optional[str], typer.Argument(help="GGUF model file; the bundled demo model when omitted.")
]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="GGUF model; the session's own, or the demo model.")
]
SessionOpt = Annotated[str, typer.Option("--session", "-s", help="Session name.")]
SessionArg = Annotated[str, typer.Argument(help="Session name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
CtxOpt = Annotated[int, typer.Option("-c", "--ctx-size", help="Context size in tokens.")]
NewCtxOpt = Annotated[Optional[int], typer.Option(
    "-c", "--ctx-size", help="Window in tokens (new sessions; default 2048).")]
ThreadsOpt = Annotated[Optional[int], typer.Option("-t", "--threads", help="CPU threads (default: IKV_THREADS, else every core).")]
NglOpt = Annotated[int, typer.Option("-ngl", "--n-gpu-layers", help="Layers to offload to the GPU.")]
BudgetOpt = Annotated[Optional[str], typer.Option(
    "--kv-budget", help="Hot KV memory (e.g. 64MiB): window and cache types are planned to fit.")]
MaxKlOpt = Annotated[Optional[float], typer.Option(
    "--max-kl", min=0.0, help="Quality bound for quantized caches: mean KL vs f16, nats/token "
    "(default 0.02).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]


def window_checked(command: Callable[..., Any]) -> Callable[..., Any]:
    """`-c` is a window in tokens: 0 or less is refused (0 used to become 2048 silently)."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        ctx_size = kwargs.get("ctx_size")
        if ctx_size is not None and ctx_size <= 0:
            raise typer.BadParameter(f"the window must be a positive number of tokens, got "
                                     f"{ctx_size}", param_hint="'-c' / '--ctx-size'")
        return command(*args, **kwargs)

    return checked


def budget_bytes(kv_budget: str | None) -> int | None:
    """`--kv-budget` read before anything is loaded, so a typo costs nothing."""
    from ikv_local.sizes import parse_size

    return None if kv_budget is None else parse_size(kv_budget)


def check_budget(session: Session, kv_budget: str | None) -> None:
    """An existing session must fit the budget as it is."""
    budget = budget_bytes(kv_budget)
    if budget is None:
        return
    from ikv_local.budget import check_fits

    cfg = session.engine.config
    check_fits(session.name, session.kv_bytes, session.engine.n_ctx, cfg.type_k, cfg.type_v, budget)
