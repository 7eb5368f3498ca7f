"""What several `ikv` commands print beside their results: on stderr, never in the JSON.

rich is imported inside the functions so `ikv --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from ikv_local.budget import Plan
    from ikv_local.recall import Span


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def excerpt(text: str, around: str | None = None, width: int = 160) -> str:
    """One line of `text`, `width` characters, around the first `around` when given."""
    text = " ".join(text.split())
    at = text.find(around) if around else -1
    start = max(0, at - width // 3) if at >= 0 else 0
    out = text[start : start + width]
    return ("…" if start else "") + out + ("…" if start + width < len(text) else "")


def print_recalled(console: Console, spans: Sequence[Span], shown: int = 5) -> None:
    """Best spans first, each with where it came from."""
    from rich.markup import escape

    if not spans:
        return
    console.print(f"[dim]recalled {len(spans)} span(s), best first:[/]")
    for s in sorted(spans, key=lambda s: -s.score)[:shown]:
        console.print(f"[dim]  {escape(Path(s.source).name)} tokens {s.position:,}–"
                      f"{s.position + len(s.tokens):,} (score {s.score:.3f}): "
                      f"{escape(excerpt(s.text))}[/]")


@contextmanager
def damage_progress(console: Console) -> Iterator[Callable[[int, int], None]]:
    """A bar while a plan measures the cache damage (once per model); it goes when done."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("measuring KV cache damage against f16 (once per model)"), BarColumn(),
                   TextColumn("{task.completed:,}/{task.total:,} tokens"), TimeElapsedColumn(),
                   console=console, transient=True)
    task = None

    def show(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("", total=total)
        bar.update(task, completed=done)

    try:
        yield show
    finally:
        bar.stop()


def print_plan(console: Console, plan: Plan) -> None:
    console.print(f"ikv: {plan.summary()}", markup=False, highlight=False)
