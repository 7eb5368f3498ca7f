"""The `ikv` command: a thin shell over the library.

Heavy imports (llama.cpp, numpy) happen inside commands so `ikv --help` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from typing import Annotated, Optional

import typer

from ikv_local import (cli_bench, cli_chat, cli_docs, cli_search, cli_serve, cli_sessions,
                       interrupts)
from ikv_local.cli_options import (CtxOpt, JsonOpt, MaxKlOpt, ModelArg, NglOpt, ThreadsOpt,
                                   window_checked)
from ikv_local.cli_output import damage_progress, err_console, print_plan
from ikv_local.errors import IkvError
from ikv_local.sizes import format_size, parse_size

app = typer.Typer(
    name="ikv",
    help="A local LLM tool whose memory has no end.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
@window_checked
def info(
    model: ModelArg = None,
    ctx_size: CtxOpt = 512,
    n_gpu_layers: NglOpt = 0,
    measure: Annotated[
        bool, typer.Option(help="Check the KV figures against llama.cpp's own state size.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Model facts and what its KV cache costs, beside the 104-byte archive."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.engine import Engine, EngineConfig
    from ikv_local.info import SIZES, model_info
    from ikv_local.model_file import resolve_model
    from ikv_local.support import verdict

    err = Console(stderr=True)
    with err.status("loading model"):
        path = resolve_model(model)
        with Engine(path, EngineConfig(n_ctx=ctx_size, n_gpu_layers=n_gpu_layers)) as eng:
            report = model_info(eng, measure=measure)
    if json_out:
        print(json.dumps(report.to_dict()))
        return
    f = report.facts
    out = Console()
    facts = Table(title=f"{f.name or f.arch}  ({f.description})", show_header=False)
    facts.add_row("file", f"{f.path} ({format_size(f.file_bytes)})")
    facts.add_row("architecture", f"{f.arch}, {f.n_params / 1e6:,.0f}M parameters")
    facts.add_row("layers", f"{f.n_layer} (embedding {f.n_embd}, {f.n_head} query heads)")
    kv_heads = sorted({(lay.n_head_kv, lay.head_dim_k, lay.head_dim_v) for lay in f.layers})
    facts.add_row(
        "KV heads × dims", ", ".join(f"{h} × {k}/{v}" for h, k, v in kv_heads) + " (K/V per layer)"
    )
    rope = sorted({(lay.rope_base, lay.rope_scale) for lay in f.layers})
    facts.add_row(
        "rope", f"{f.rope_type}, scaling {f.rope_scaling}; base/scale "
        + ", ".join(f"{b:g}/{s:g}" for b, s in rope)
    )
    if f.swa_layers:
        facts.add_row(
            "sliding window", f"{f.n_swa} tokens on layers {f.swa_layers}; global: {f.global_layers}"
        )
    else:
        facts.add_row("sliding window", "none")
    facts.add_row("trained context", f"{f.n_ctx_train:,} tokens")
    facts.add_row("KV cache can shift", "yes" if f.can_shift else "no: ikv cannot roll its window")
    facts.add_row("chat template", "yes" if f.has_chat_template else "none (plain completion prompt)")
    facts.add_row("vocabulary", f"{f.n_vocab:,} tokens")
    facts.add_row("ikv memory", verdict(f))
    out.print(facts)
    costs = Table(title="KV cache per token, all layers (ikv keeps the SWA cache full-size)")
    costs.add_column("cache")
    costs.add_column("bytes/token", justify="right")
    costs.add_column("llama.cpp state", justify="right")
    for n in SIZES:
        costs.add_column(f"{n:,} tokens", justify="right")
    if f.swa_layers:
        costs.add_column(f"1,000,000 (SWA at {f.n_swa})", justify="right")
    for c in report.costs:
        row = [
            c.cache_type,
            f"{c.bytes_per_token:,}",
            "—" if c.measured_bytes_per_token is None else f"{c.measured_bytes_per_token:,.0f}",
            format_size(c.tokens_100k),
            format_size(c.tokens_1m),
        ]
        if f.swa_layers:
            row.append(format_size(c.tokens_1m_swa_trimmed))
        costs.add_row(*row)
    archive = report.archive_bytes_per_token
    row = ["ikv archive", f"{archive}", "", format_size(archive * SIZES[0]), format_size(archive * SIZES[1])]
    costs.add_row(*(row + ([format_size(archive * SIZES[1])] if f.swa_layers else [])))
    out.print(costs)


@app.command("plan")
@window_checked
def plan_cmd(
    model: ModelArg = None,
    kv_budget: Annotated[str, typer.Option("--kv-budget", help="Hot KV memory, e.g. 64MiB.")] = "64MiB",
    max_kl: MaxKlOpt = None,
    ctx_size: Annotated[Optional[int], typer.Option("-c", "--ctx-size", help="Largest window wanted.")] = None,
    threads: ThreadsOpt = None,
    n_gpu_layers: NglOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Every KV cache type's window inside a budget, its measured damage, and ikv's choice."""
    from rich.console import Console
    from rich.table import Table

    from ikv_local.budget import plan_model

    err = err_console()
    budget = parse_size(kv_budget)
    with damage_progress(err) as show:
        plan = plan_model(model, budget, max_kl=max_kl, n_ctx_cap=ctx_size, n_threads=threads,
                          n_gpu_layers=n_gpu_layers, measure_all=True, progress=show)
    if not json_out:
        print_plan(err, plan)
    if json_out:
        print(json.dumps(plan.to_dict()))
        return
    table = Table(title=f"KV budget {format_size(plan.budget)}: one option per cache pair "
                        f"(damage bound: mean KL ≤ {plan.max_kl:g} nats/token vs f16)")
    for col in ("K", "V", "window", "KV", "flash attn", "KL vs f16", "KL p95", "top-1 vs f16", ""):
        table.add_column(col, justify="left" if col in ("K", "V", "") else "right")
    for o in plan.found:
        d = plan.damage.get((o.type_k, o.type_v))
        ref = o.type_k == o.type_v == "f16"
        table.add_row(
            o.type_k, o.type_v, f"{o.n_ctx:,}", format_size(o.kv_bytes), "yes" if o.flash_attn else "",
            "0 (ref.)" if ref else "—" if d is None else f"{d.kl_mean:.4f}",
            "" if ref or d is None else f"{d.kl_p95:.4f}",
            "" if ref or d is None else f"{d.top1_agree:.1%}",
            "← chosen" if o == plan.chosen else "",
        )
    Console().print(table)
    err.print("The archive (104 B/token on disk) is outside the budget. ikv chat/ingest "
              f"--kv-budget {kv_budget} uses the chosen row.", highlight=False)


@app.command()
def doctor(json_out: JsonOpt = False) -> None:
    """Check llama-cpp-python, its backend, the data dir and the demo model."""
    from ikv_local.doctor import run_checks

    checks = run_checks()
    failed = any(c.status == "fail" for c in checks)
    if json_out:
        print(json.dumps({"ok": not failed, "checks": [c.__dict__ for c in checks]}))
    else:
        from rich.console import Console
        from rich.table import Table

        marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        table = Table(show_header=False)
        for c in checks:
            table.add_row(marks[c.status], c.name, c.detail)
        Console().print(table)
    if failed:
        raise typer.Exit(1)


app.command("ingest")(window_checked(cli_docs.ingest_cmd))
app.command("ask")(cli_docs.ask_cmd)
app.command("demo")(window_checked(cli_bench.demo_cmd))
app.command("chat")(window_checked(cli_chat.chat_cmd))
app.command("search")(cli_search.search_cmd)
app.command("serve")(window_checked(cli_serve.serve_cmd))
app.command("tui", help="The Textual chat app: sessions, conversation, and the memory at work.")(
    window_checked(cli_chat.chat_cmd))
app.add_typer(cli_bench.bench, name="bench")
app.add_typer(cli_sessions.sessions, name="sessions")


def _warn(message: Warning | str, *_: object, **__: object) -> None:
    print(f"ikv: warning: {message}", file=sys.stderr)


def _stopped(stop: interrupts.Stopped | None) -> None:
    """Ctrl-C or SIGTERM: one line, exit 130 or 143."""
    stop = stop or interrupts.Stopped()
    print(f"ikv: {stop.message}", file=sys.stderr)
    sys.exit(stop.exit_code)


@functools.cache
def _command() -> typer.core.TyperGroup:
    """The click command typer builds from `app`, built once: typer reads every command's
    signature again on each build, which a process that runs main again (the test suite's
    in-process runs) would pay each time."""
    return typer.main.get_command(app)  # type: ignore[return-value]


def main() -> None:
    warnings.showwarning = _warn
    interrupts.install()
    # typer keeps click's UsageError private; reach it through a public subclass
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        result = _command()(standalone_mode=False)
    except usage_error as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        if message.strip():  # empty when `ikv` alone asked for the help it got
            print(f"ikv: error: {message}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _stopped(interrupts.last_stop())
    except IkvError as exc:
        print(f"ikv: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _stopped(exc if isinstance(exc, interrupts.Stopped) else None)
    except OSError as exc:  # a read or write outside files.py: still one line
        from ikv_local.files import storage_error

        err = storage_error(exc, exc.filename or "a file", "read or write")
        print(f"ikv: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    if result == 130 and interrupts.last_stop() is not None:
        _stopped(interrupts.last_stop())  # typer returns 130 for every KeyboardInterrupt
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
