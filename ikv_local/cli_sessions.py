"""`ikv sessions`: list, show, rename, fork, remove, prune, export, reindex, check and repair sessions.

Registered on the app by `ikv_local.cli`; heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from ikv_local.cli_options import JsonOpt, ModelOpt, SessionArg, ThreadsOpt, YesOpt
from ikv_local.cli_output import err_console
from ikv_local.errors import IkvError
from ikv_local.sizes import format_size

sessions = typer.Typer(help="Sessions on disk: list, show, rename, fork, remove, export, "
                       "reindex, check, repair.",
                       no_args_is_help=True)


@sessions.command("list")
def sessions_list(json_out: JsonOpt = False) -> None:
    """Every session, newest first, without loading a model."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from ikv_local.session import list_sessions

    infos = list_sessions()
    if json_out:
        print(json.dumps([i.to_dict() for i in infos]))
        return
    if not infos:
        err_console().print("no sessions yet; make one with: ikv ingest FILE --session NAME")
        return
    console = Console()
    if not console.is_terminal:  # piped: one plain, tab-separated line per session
        print("\t".join(("session", "model", "window", "turns", "documents", "tokens", "archived",
                         "bytes", "last used")))
        for i in infos:
            print("\t".join((i.name, i.problem or i.model, str(i.n_ctx), str(i.turns),
                             str(i.documents), str(i.tokens), str(i.archived_tokens),
                             str(i.disk_bytes), i.updated)))
        return
    # names never fold; a long model name or problem folds inside its own column instead
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("session", no_wrap=True, min_width=max(len(i.name) for i in infos))
    table.add_column("model", overflow="fold", ratio=1)
    for col in ("window", "turns", "docs", "tokens", "archived", "size"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    table.add_column("last used", no_wrap=True)
    for i in infos:
        table.add_row(i.name, i.problem or i.model, f"{i.n_ctx:,}", str(i.turns), str(i.documents),
                      f"{i.tokens:,}", f"{i.archived_tokens:,}", format_size(i.disk_bytes),
                      i.updated[:16].replace("T", " "))
    if Measurement.get(console, console.options, table).minimum + 12 <= console.width:
        console.print(table)
        return
    for i in infos:  # too narrow for the table: the name on its own line, the rest below it
        console.print(i.name, style="bold", highlight=False, soft_wrap=True)
        console.print(Padding(Text(
            f"{i.problem or i.model} · window {i.n_ctx:,} · {i.turns} turns · {i.documents} "
            f"documents · {i.tokens:,} tokens, {i.archived_tokens:,} archived · "
            f"{format_size(i.disk_bytes)} · {i.updated[:16].replace('T', ' ')}"), (0, 0, 0, 2)))


@sessions.command("show")
def sessions_show(name: SessionArg,
                  json_out: JsonOpt = False) -> None:
    """One session: its model, window, documents and size."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.metadata import KvTypes
    from ikv_local.session import read_meta, session_info

    info = session_info(name)
    meta = read_meta(name) if not info.problem else None
    docs = meta.documents if meta else []
    kv = meta.kv if meta else KvTypes()
    if json_out:
        print(json.dumps({**info.to_dict(), "model_path": meta.model.path if meta else None,
                          "layout": meta.layout if meta else None, "kv": asdict(kv),
                          "documents": [asdict(d) for d in docs]}))
        return
    table = Table(title=f"session {name}", show_header=False)
    table.add_row("model", f"{info.model} ({meta.model.path if meta else '?'})")
    table.add_row("window", f"{info.n_ctx:,} tokens; layout {meta.layout if meta else None}")
    table.add_row("KV cache", f"K {kv.type_k} / V {kv.type_v}")
    table.add_row("tokens", f"{info.tokens:,} ({info.archived_tokens:,} archived)")
    table.add_row("turns", str(info.turns))
    if meta and meta.system:
        table.add_row("system prompt", meta.system)
    table.add_row("on disk", format_size(info.disk_bytes))
    table.add_row("updated", info.updated)
    for d in docs:
        state = "" if d.complete else " (interrupted)"
        table.add_row("document", f"{d.path}: {d.tokens:,} tokens{state}")
    if info.problem:
        table.add_row("problem", info.problem)
    Console().print(table)


@sessions.command("rm")
def sessions_rm(name: SessionArg,
                yes: YesOpt = False) -> None:
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
        err_console().print(f"removed session {name!r}: it was a link, and only the link went; "
                             f"{target} was left as it was", markup=False, highlight=False)
        return
    err_console().print(f"deleted session {name!r}")


@sessions.command("prune")
def sessions_prune(
    name: SessionArg,
    before: Annotated[Optional[str], typer.Option("--before", help="Forget documents and turns that came before this date (2026-11-01).")] = None,
    keep_last: Annotated[Optional[int], typer.Option("--keep-last", help="Forget all but the last N documents and turns.")] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Forget the oldest part of a session (the only way ikv drops anything). No undo.

    The hot window is never pruned; what it holds stays until it ages into the archive.
    """
    from ikv_local.prune import archived_before, cut_position, parse_date, prune
    from ikv_local.session import OpenOptions, Session

    when = parse_date(before) if before is not None else None
    if (when is None) == (keep_last is None):
        raise typer.BadParameter("give one of --before DATE or --keep-last N", param_hint="--before")
    if keep_last is not None and keep_last < 0:
        raise typer.BadParameter("a number of documents and turns, 0 or more", param_hint="--keep-last")
    err = err_console()
    with err.status("loading session"):
        s = Session(name, OpenOptions())
    with s:
        cut = cut_position(s, before=when, keep_last=keep_last)
        drop = archived_before(s, cut)
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
    name: SessionArg,
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
    err_console().print(f"wrote {out} ({format_size(len(text.encode()))})", markup=False)


@sessions.command("reindex")
def sessions_reindex(name: SessionArg,
                     json_out: JsonOpt = False) -> None:
    """Rebuild a session's search index from its records (checksums checked on the way)."""
    from ikv_local.export import reindex

    err = err_console()
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
def sessions_rename(name: SessionArg,
                    new: Annotated[str, typer.Argument(help="Its new name.")]) -> None:
    """Give a session another name (not while a process has it open)."""
    from ikv_local.session import rename_session

    rename_session(name, new)
    err_console().print(f"renamed session {name!r} to {new!r}", markup=False)


@sessions.command("fork")
def sessions_fork(name: SessionArg,
                  new: Annotated[str, typer.Argument(help="The new session's name.")],
                  at_turn: Annotated[Optional[int], typer.Option(
                      "--at-turn", help="Share turns 1 to N only (default: all of them).")] = None,
                  model: ModelOpt = None, threads: ThreadsOpt = None,
                  json_out: JsonOpt = False) -> None:
    """A new session sharing NAME's conversation (up to a turn); NAME is left as it is."""
    from ikv_local.branch import fork
    from ikv_local.session import OpenOptions

    err = err_console()
    with err.status(f"forking {name}"):
        done = fork(name, new, at_turn, OpenOptions(model=model, n_threads=threads))
    if json_out:
        print(json.dumps(asdict(done)))
        return
    err.print(f"forked session {new!r} from {name!r} at turn {done.at_turn} of {done.turns} "
              f"({done.tokens:,} tokens); chat in it with: ikv chat --session {new}",
              markup=False)


@sessions.command("check")
def sessions_check(name: SessionArg,
                   json_out: JsonOpt = False) -> None:
    """Verify every file of a session (no model needed); exit 1 when anything is damaged."""
    from ikv_local.repair import check

    report = check(name)
    if json_out:
        print(json.dumps(report.to_dict()))
    else:
        err = err_console()
        for f in report.findings:
            err.print(f"{'ok     ' if f.ok else 'DAMAGED'} {f.part}: {f.detail}", markup=False,
                      highlight=False)
        err.print(f"session {name!r} is sound" if report.sound else
                  f"session {name!r} is damaged; run: ikv sessions repair {name}", markup=False)
    if not report.sound:
        raise typer.Exit(1)


@sessions.command("repair")
def sessions_repair(name: SessionArg,
                    model: ModelOpt = None, threads: ThreadsOpt = None,
                    json_out: JsonOpt = False) -> None:
    """Keep every record and turn that verifies, rebuild the rest, set damage aside in damaged/."""
    from ikv_local.repair import repair

    err = err_console()
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
