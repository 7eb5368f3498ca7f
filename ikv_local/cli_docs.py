"""`ikv ingest` and `ikv ask`: text into a session, questions out of it.

Registered on the app by `ikv_local.cli`; heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ikv_local.cli_options import (BudgetOpt, JsonOpt, MaxKlOpt, ModelOpt, NewCtxOpt, NglOpt,
                                   SessionOpt, ThreadsOpt, budget_bytes, check_budget)
from ikv_local.cli_output import damage_progress, err_console, print_plan, print_recalled

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ikv_local.ingest import IngestResult
    from ikv_local.ingest import Progress as IngestProgress
    from ikv_local.session import OpenOptions


def _ingest_progress(console: Console) -> Progress:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[tokens]:,} tokens · {task.fields[rate]:,.0f} tok/s · "
                   "{task.fields[archived]:,} archived"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_ingest(session_name: str, paths: list[Path], options: OpenOptions, console: Console,
               ctx_given: bool = True, kv_budget: str | None = None) -> IngestResult:
    """Open (or make) the session and ingest with a progress bar; returns the result."""
    from ikv_local.ingest import check_text_file, ingest
    from ikv_local.session import Session

    for p in paths:  # refuse bad input before loading anything
        check_text_file(p)
    with console.status("loading model and session"):
        session = Session(session_name, options)
    try:
        check_budget(session, kv_budget)
    except BaseException:
        session.close()
        raise
    if options.create and session.meta.n_ctx != options.n_ctx and ctx_given:
        console.print(f"ikv: note: session {session_name!r} keeps its window of "
                      f"{session.meta.n_ctx:,} tokens", markup=False, highlight=False)
    with session, _ingest_progress(console) as progress:
        tasks = {str(p): progress.add_task(p.name, total=p.stat().st_size, start=False, tokens=0,
                                           rate=0.0, archived=session.window.archived)
                 for p in paths}

        def show(p: IngestProgress) -> None:
            task = tasks[p.file]
            progress.start_task(task)
            progress.update(task, completed=p.bytes_done, tokens=p.tokens,
                            rate=p.tokens / max(p.seconds, 1e-9), archived=p.archived)

        return ingest(session, paths, show)


def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="UTF-8 text files.")],
    session: SessionOpt,
    model: ModelOpt = None,
    ctx_size: NewCtxOpt = None,
    threads: ThreadsOpt = None,
    n_gpu_layers: NglOpt = 0,
    kv_budget: BudgetOpt = None,
    max_kl: MaxKlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read text into a session: the window rolls, nothing is dropped."""
    from ikv_local.budget import plan_session
    from ikv_local.ingest import check_text_file
    from ikv_local.session import OpenOptions

    budget = budget_bytes(kv_budget)
    err = err_console()
    for p in paths:  # refuse bad input before a plan measures anything
        check_text_file(p)
    with damage_progress(err) as show:
        shape = plan_session(session, model, budget, n_ctx=ctx_size, max_kl=max_kl,
                             n_threads=threads, n_gpu_layers=n_gpu_layers, progress=show)
    if shape.plan is not None:
        print_plan(err, shape.plan)
    options = OpenOptions(model=model, n_ctx=shape.n_ctx, n_threads=threads,
                          n_gpu_layers=n_gpu_layers, create=True, type_k=shape.type_k,
                          type_v=shape.type_v)
    result = run_ingest(session, paths, options, err,
                        ctx_given=ctx_size is not None and not kv_budget, kv_budget=kv_budget)
    if json_out:
        print(json.dumps(result.to_dict()))
    else:
        err.print(
            f"session [bold]{result.session}[/]: read {result.tokens:,} tokens in "
            f"{result.seconds:.1f} s; window {result.window_tokens:,} tokens, archive "
            f"{result.archived_tokens:,} tokens ({result.archive_bytes / 2**20:.1f} MiB)"
        )


def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question.")],
    session: SessionOpt,
    no_recall: Annotated[bool, typer.Option("--no-recall",
                                            help="Baseline: the same window, nothing recalled.")] = False,
    max_tokens: Annotated[int, typer.Option("-n", "--max-tokens", min=1, help="Answer length cap.")] = 128,
    recall_every: Annotated[int, typer.Option("--recall-every", min=0,
                                              help="Refresh recall every N generated tokens (0: once).")] = 0,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    n_gpu_layers: NglOpt = 0,
    kv_budget: BudgetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer a question from a session (the session itself is not changed)."""
    from ikv_local.ask import ask
    from ikv_local.session import OpenOptions, Session

    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    budget_bytes(kv_budget)
    err = err_console()
    with err.status("loading model and session"):
        s = Session(session, OpenOptions(model=model, n_threads=threads,
                                         n_gpu_layers=n_gpu_layers, writable=False))
    with s:
        check_budget(s, kv_budget)
        stream = None if json_out else (lambda t: (sys.stdout.write(t), sys.stdout.flush()))
        answer = ask(s, question, recall=not no_recall, max_tokens=max_tokens,
                     recall_every=recall_every, on_text=stream)
    if json_out:
        print(json.dumps(answer.to_dict()))
        return
    print()
    print_recalled(err, answer.recalled)
