"""`ikv ingest`, `ikv ask`, `ikv demo`, `ikv bench passkey`: thin shells over the library.

Registered on the app by `ikv_local.cli`; heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ikv_local.errors import IkvError
from ikv_local.sizes import format_size

SessionOpt = Annotated[str, typer.Option("--session", "-s", help="Session name.")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="GGUF model; the session's own, or the demo model.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("-t", "--threads", help="CPU threads.")]
NglOpt = Annotated[int, typer.Option("-ngl", "--n-gpu-layers", help="Layers to offload to the GPU.")]
BudgetOpt = Annotated[Optional[str], typer.Option(
    "--kv-budget", help="Hot KV memory (e.g. 64MiB): window and cache types are planned to fit.")]
MaxKlOpt = Annotated[Optional[float], typer.Option(
    "--max-kl", min=0.0, help="Quality bound for quantized caches: mean KL vs f16, nats/token "
    "(default 0.02).")]


def planned(model: str | None, kv_budget: str, max_kl: float | None, ctx_cap: int | None,
            threads: int | None, n_gpu_layers: int, console,  # type: ignore[no-untyped-def]
            measure_all: bool = False, quiet: bool = False):
    """The plan for a new session, printed on stderr; the damage is measured once per model."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ikv_local.budget import MAX_KL, plan_model
    from ikv_local.model_file import resolve_model
    from ikv_local.sizes import parse_size

    budget = parse_size(kv_budget)
    path = str(resolve_model(model))
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
        plan = plan_model(path, budget, max_kl=MAX_KL if max_kl is None else max_kl,
                          n_ctx_cap=ctx_cap, n_threads=threads, n_gpu_layers=n_gpu_layers,
                          measure_all=measure_all, progress=show)
    finally:
        bar.stop()
    if not quiet:
        console.print(f"ikv: {plan.summary()}", markup=False, highlight=False)
    return plan


def budget_bytes(kv_budget: str | None) -> int | None:
    """`--kv-budget` read before anything is loaded, so a typo costs nothing."""
    from ikv_local.sizes import parse_size

    return None if kv_budget is None else parse_size(kv_budget)


def check_budget(session, kv_budget: str | None) -> None:  # type: ignore[no-untyped-def]
    """An existing session must fit the budget as it is."""
    budget = budget_bytes(kv_budget)
    if budget is None:
        return
    from ikv_local.budget import check_fits

    cfg = session.engine.config
    check_fits(session.name, session.kv_bytes, session.engine.n_ctx, cfg.type_k, cfg.type_v, budget)


def _err_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def _ingest_progress(console):  # type: ignore[no-untyped-def]
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


def run_ingest(session_name: str, paths: list[Path], options, console,  # type: ignore[no-untyped-def]
               ctx_given: bool = True, kv_budget: str | None = None):
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
    if options.create and session.meta["n_ctx"] != options.n_ctx and ctx_given:
        console.print(f"ikv: note: session {session_name!r} keeps its window of "
                      f"{session.meta['n_ctx']:,} tokens", markup=False, highlight=False)
    with session, _ingest_progress(console) as progress:
        tasks = {str(p): progress.add_task(p.name, total=p.stat().st_size, start=False, tokens=0,
                                           rate=0.0, archived=session.window.archived)
                 for p in paths}

        def show(p) -> None:  # type: ignore[no-untyped-def]
            task = tasks[p.file]
            progress.start_task(task)
            progress.update(task, completed=p.bytes_done, tokens=p.tokens,
                            rate=p.tokens / max(p.seconds, 1e-9), archived=p.archived)

        return ingest(session, paths, show)


def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="UTF-8 text files.")],
    session: SessionOpt,
    model: ModelOpt = None,
    ctx_size: Annotated[Optional[int], typer.Option("-c", "--ctx-size",
                                                    help="Window in tokens (new sessions; default 2048).")] = None,
    threads: ThreadsOpt = None,
    n_gpu_layers: NglOpt = 0,
    kv_budget: BudgetOpt = None,
    max_kl: MaxKlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read text into a session: the window rolls, nothing is dropped."""
    from ikv_local.ingest import check_text_file
    from ikv_local.session import OpenOptions, check_name, sessions_dir

    budget_bytes(kv_budget)
    err = _err_console()
    n_ctx, types = ctx_size or 2048, ("f16", "f16")
    if kv_budget and not (sessions_dir() / check_name(session) / "session.json").is_file():
        for p in paths:
            check_text_file(p)
        plan = planned(model, kv_budget, max_kl, ctx_size, threads, n_gpu_layers, err).chosen
        n_ctx, types = plan.n_ctx, (plan.type_k, plan.type_v)
    options = OpenOptions(model=model, n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers,
                          create=True, type_k=types[0], type_v=types[1])
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


def _excerpt(text: str, around: str | None = None, width: int = 160) -> str:
    text = " ".join(text.split())
    at = text.find(around) if around else -1
    start = max(0, at - width // 3) if at >= 0 else 0
    out = text[start : start + width]
    return ("…" if start else "") + out + ("…" if start + width < len(text) else "")


def _print_recalled(console, spans, shown: int = 5) -> None:  # type: ignore[no-untyped-def]
    """Best spans first, each with where it came from."""
    from rich.markup import escape

    if not spans:
        return
    console.print(f"[dim]recalled {len(spans)} span(s), best first:[/]")
    for s in sorted(spans, key=lambda s: -s.score)[:shown]:
        console.print(f"[dim]  {escape(Path(s.source).name)} tokens {s.position:,}–"
                      f"{s.position + len(s.tokens):,} (score {s.score:.3f}): "
                      f"{escape(_excerpt(s.text))}[/]")


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
    err = _err_console()
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
    _print_recalled(err, answer.recalled)


def demo_cmd(
    multiple: Annotated[int, typer.Option(help="Document length, in windows.")] = 8,
    depth: Annotated[float, typer.Option(min=0.0, max=1.0, help="Where the key is buried (0-1).")] = 0.3,
    ctx_size: Annotated[int, typer.Option("-c", "--ctx-size", help="Window in tokens.")] = 2048,
    seed: Annotated[int, typer.Option(help="Picks the pass key and the filler.")] = 7,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bury a pass key in a long document, ingest it with a small window, and ask."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.passkey import ANSWER_PREFIX, QUESTION, document, side_by_side
    from ikv_local.paths import temporary_home
    from ikv_local.session import OpenOptions

    err = _err_console()
    text, key = document(multiple * ctx_size, depth, seed)
    with temporary_home("ikv-demo-") as home:
        path = home / "document.txt"
        path.write_text(text)
        err.print(f"A {len(text):,}-character document ({multiple}× a {ctx_size:,}-token window); "
                  f"the pass key [bold]{key}[/] is at {depth:.0%}.")
        result = run_ingest("demo", [path], OpenOptions(model=model, n_ctx=ctx_size,
                                                        n_threads=threads, create=True), err)
        both = side_by_side("demo", result.tokens, model, threads)
    ikv, base = both.ikv, both.sliding
    hot, full = both.hot_kv_bytes, both.full_kv_bytes
    report = {
        "key": key, "tokens": result.tokens, "window": ctx_size,
        "ikv": {**ikv.to_dict(), "correct": key in ikv.text},
        "sliding_window": {**base.to_dict(), "correct": key in base.text},
        "hot_kv_bytes": hot, "full_context_kv_bytes": full,
    }
    if json_out:
        print(json.dumps(report))
        return
    out = Console()
    table = Table(title=f"{QUESTION}  (the key is {key})")
    table.add_column("")
    table.add_column("ikv: window + recall")
    table.add_column("sliding window (llama.cpp context shift)")
    mark = lambda ok: "[green]correct[/]" if ok else "[red]wrong[/]"  # noqa: E731
    table.add_row("answer", f"{ANSWER_PREFIX.strip()}{ikv.text}".strip(),
                  f"{ANSWER_PREFIX.strip()}{base.text}".strip())
    table.add_row("", mark(key in ikv.text), mark(key in base.text))
    table.add_row("hot KV cache", f"{hot / 2**20:.1f} MiB", f"{hot / 2**20:.1f} MiB")
    table.add_row("archive", f"{result.archived_tokens:,} tokens, {result.archive_bytes / 2**20:.1f} MiB", "—")
    table.add_row("recall", f"{ikv.recall_seconds * 1000:.0f} ms", "—")
    out.print(table)
    out.print(f"Full context would need {full / 2**20:.1f} MiB of KV cache for {result.tokens:,} tokens.")
    found = [s for s in ikv.recalled if key in s.text]
    if found:
        s = found[0]
        out.print(f"The key came back from {Path(s.source).name}, tokens {s.position:,}–"
                  f"{s.position + len(s.tokens):,} (score {s.score:.3f}, {len(ikv.recalled)} spans "
                  f"recalled): {_excerpt(s.text, key)}", markup=False, highlight=False)
    else:
        _print_recalled(out, ikv.recalled)


bench = typer.Typer(help="Benchmarks that write JSON receipts.", no_args_is_help=True)


@bench.command("passkey")
def bench_passkey(
    ctx_size: Annotated[int, typer.Option("-c", "--ctx-size")] = 2048,
    multiples: Annotated[str, typer.Option(help="Document lengths, in windows.")] = "4,8,16,32",
    depths: Annotated[str, typer.Option(help="Key depths, 0-1.")] = "0.1,0.3,0.5,0.7,0.9",
    seeds: Annotated[int, typer.Option(help="Keys per length and depth.")] = 1,
    full_max: Annotated[int, typer.Option(help="Full context up to this many tokens.")] = 16384,
    model: ModelOpt = None,
    out: Annotated[str, typer.Option(help="Folder for passkey.json.")] = "receipts",
    json_out: JsonOpt = False,
) -> None:
    """Pass key at several depths: ikv, the sliding window and full context side by side."""
    from ikv_local.passkey import run_and_record

    try:
        ms = [int(x) for x in multiples.split(",")]
        ds = [float(x) for x in depths.split(",")]
    except ValueError:
        raise typer.BadParameter("use comma-separated numbers") from None
    err = _err_console()
    rows, path = run_and_record(ms, ds, n_ctx=ctx_size, seeds=seeds, full_max_tokens=full_max,
                                model=model, out_dir=out, command="ikv bench passkey " + " ".join(sys.argv[3:]),
                                log=(lambda line: err.print(line, markup=False, highlight=False)))
    if json_out:
        print(json.dumps({"summary": rows, "receipt": str(path)}))


sessions = typer.Typer(help="Sessions on disk: list, show, rename, remove, export, reindex, "
                       "check, repair.",
                       no_args_is_help=True)


@sessions.command("list")
def sessions_list(json_out: JsonOpt = False) -> None:
    """Every session, newest first, without loading a model."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.session import list_sessions

    infos = sorted(list_sessions(), key=lambda i: i.updated, reverse=True)
    if json_out:
        print(json.dumps([i.to_dict() for i in infos]))
        return
    if not infos:
        _err_console().print("no sessions yet; make one with: ikv ingest FILE --session NAME")
        return
    table = Table()
    numbers = ("window", "turns", "documents", "tokens", "archived", "on disk")
    for col in ("session", "model", *numbers, "last used"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for i in infos:
        table.add_row(i.name, i.problem or i.model, f"{i.n_ctx:,}", str(i.turns), str(i.documents),
                      f"{i.tokens:,}", f"{i.archived_tokens:,}", format_size(i.disk_bytes), i.updated)
    Console().print(table)


@sessions.command("show")
def sessions_show(name: Annotated[str, typer.Argument(help="Session name.")],
                  json_out: JsonOpt = False) -> None:
    """One session: its model, window, documents and size."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.session import read_meta, session_info

    info = session_info(name)
    meta = read_meta(name) if not info.problem else {}
    docs = meta.get("documents", [])
    if json_out:
        print(json.dumps({**info.to_dict(), "model_path": meta.get("model", {}).get("path"),
                          "layout": meta.get("layout"), "kv": meta.get("kv", {"type_k": "f16", "type_v": "f16"}),
                          "documents": docs}))
        return
    table = Table(title=f"session {name}", show_header=False)
    table.add_row("model", f"{info.model} ({meta.get('model', {}).get('path', '?')})")
    table.add_row("window", f"{info.n_ctx:,} tokens; layout {meta.get('layout')}")
    kv = meta.get("kv", {})
    table.add_row("KV cache", f"K {kv.get('type_k', 'f16')} / V {kv.get('type_v', 'f16')}")
    table.add_row("tokens", f"{info.tokens:,} ({info.archived_tokens:,} archived)")
    table.add_row("turns", str(info.turns))
    if meta.get("system"):
        table.add_row("system prompt", meta["system"])
    table.add_row("on disk", format_size(info.disk_bytes))
    table.add_row("updated", info.updated)
    for d in docs:
        state = "" if d.get("complete") else " (interrupted)"
        table.add_row("document", f"{d['path']}: {d['tokens']:,} tokens{state}")
    if info.problem:
        table.add_row("problem", info.problem)
    Console().print(table)


@sessions.command("rm")
def sessions_rm(name: Annotated[str, typer.Argument(help="Session name.")],
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete a session: its archive, index and window. There is no undo."""
    from ikv_local.session import remove_session, session_info

    info = session_info(name)
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("refusing to delete without --yes when not on a terminal",
                                     param_hint="--yes")
        typer.confirm(f"Delete session {name!r} ({info.tokens:,} tokens, "
                      f"{format_size(info.disk_bytes)})?", abort=True)
    target = remove_session(name)
    if target is not None:
        _err_console().print(f"removed session {name!r}: it was a link, and only the link went; "
                             f"{target} was left as it was", markup=False, highlight=False)
        return
    _err_console().print(f"deleted session {name!r}")


@sessions.command("prune")
def sessions_prune(
    name: Annotated[str, typer.Argument(help="Session name.")],
    before: Annotated[Optional[str], typer.Option("--before", help="Forget documents and turns that came before this date (2026-11-01).")] = None,
    keep_last: Annotated[Optional[int], typer.Option("--keep-last", help="Forget all but the last N documents and turns.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Forget the oldest part of a session (the only way ikv drops anything). No undo.

    The hot window is never pruned; what it holds stays until it ages into the archive.
    """
    from ikv_local.prune import cut_position, parse_date, prune
    from ikv_local.session import OpenOptions, Session

    when = parse_date(before) if before is not None else None
    if (when is None) == (keep_last is None):
        raise typer.BadParameter("give one of --before DATE or --keep-last N", param_hint="--before")
    if keep_last is not None and keep_last < 0:
        raise typer.BadParameter("a number of documents and turns, 0 or more", param_hint="--keep-last")
    err = _err_console()
    with err.status("loading session"):
        s = Session(name, OpenOptions())
    with s:
        cut = cut_position(s, before=when, keep_last=keep_last)
        drop = int((s.archive.records()["position"] < cut).sum()) if len(s.archive) else 0
        if drop and not yes:
            if not sys.stdin.isatty():
                raise typer.BadParameter("refusing to prune without --yes when not on a terminal",
                                         param_hint="--yes")
            typer.confirm(f"Forget {drop:,} archived tokens of session {name!r} (before stream "
                          f"position {cut:,})?", abort=True)
        result = prune(s, cut)
    if json_out:
        print(json.dumps(result.to_dict()))
        return
    note = (f"; {result.in_window:,} tokens inside the cut are in the hot window and stay"
            if result.in_window else "")
    err.print(f"session {name!r}: forgot {result.tokens:,} archived tokens, {result.turns} turn(s), "
              f"{result.documents} whole document(s); archive {format_size(result.bytes_before)} → "
              f"{format_size(result.bytes_after)}{note}", markup=False, highlight=False)


@sessions.command("export")
def sessions_export(
    name: Annotated[str, typer.Argument(help="Session name.")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="md (transcript), json (turns and settings), text (every token held).")] = "md",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --out file if it exists.")] = False,
) -> None:
    """Write a session out: its transcript, its turns as JSON, or all the text it holds."""
    from ikv_local.export import FORMATS, export_session, write_export

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if out is not None and out.exists() and not force:
        raise IkvError(f"{out} exists; pass --force to replace it")
    text = export_session(name, fmt)
    if out is None:
        sys.stdout.write(text)
        return
    write_export(out, text, force)
    _err_console().print(f"wrote {out} ({format_size(len(text.encode()))})", markup=False)


@sessions.command("reindex")
def sessions_reindex(name: Annotated[str, typer.Argument(help="Session name.")],
                     json_out: JsonOpt = False) -> None:
    """Rebuild a session's search index from its records (checksums checked on the way)."""
    from ikv_local.export import reindex

    err = _err_console()
    with err.status(f"reindexing {name}"):
        result = reindex(name)
    if json_out:
        print(json.dumps(result.to_dict()))
        return
    how = (f"{result.lists:,} lists" if result.lists
           else "no lists needed: an archive this small is scanned exactly")
    err.print(f"session {name!r}: {result.records:,} records ({result.damaged:,} damaged, not "
              f"served); index rebuilt in {result.seconds:.1f} s, {how}, "
              f"{format_size(result.index_bytes)}", markup=False)


@sessions.command("rename")
def sessions_rename(name: Annotated[str, typer.Argument(help="Session name.")],
                    new: Annotated[str, typer.Argument(help="Its new name.")]) -> None:
    """Give a session another name (not while a process has it open)."""
    from ikv_local.session import rename_session

    rename_session(name, new)
    _err_console().print(f"renamed session {name!r} to {new!r}", markup=False)


@sessions.command("check")
def sessions_check(name: Annotated[str, typer.Argument(help="Session name.")],
                   json_out: JsonOpt = False) -> None:
    """Verify every file of a session (no model needed); exit 1 when anything is damaged."""
    from ikv_local.repair import check

    report = check(name)
    if json_out:
        print(json.dumps(report.to_dict()))
    else:
        err = _err_console()
        for f in report.findings:
            err.print(f"{'ok     ' if f.ok else 'DAMAGED'} {f.part}: {f.detail}", markup=False,
                      highlight=False)
        err.print(f"session {name!r} is sound" if report.sound else
                  f"session {name!r} is damaged; run: ikv sessions repair {name}", markup=False)
    if not report.sound:
        raise typer.Exit(1)


@sessions.command("repair")
def sessions_repair(name: Annotated[str, typer.Argument(help="Session name.")],
                    model: ModelOpt = None, threads: ThreadsOpt = None,
                    json_out: JsonOpt = False) -> None:
    """Keep every record and turn that verifies, rebuild the rest, set damage aside in damaged/."""
    from ikv_local.repair import repair

    err = _err_console()
    with err.status(f"repairing {name}"):
        report = repair(name, model=model, n_threads=threads)
    if json_out:
        print(json.dumps(report.to_dict()))
        return
    for line in report.actions:
        err.print(f"repaired: {line}", markup=False, highlight=False)
    for line in report.lost:
        err.print(f"lost: {line}", markup=False, highlight=False)
    if not report.lost:
        err.print("lost: nothing", markup=False)
    err.print(f"session {name!r} opens again", markup=False)
