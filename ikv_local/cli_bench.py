"""`ikv demo` and `ikv bench passkey`: a pass key buried in a long document, found or not.

Registered on the app by `ikv_local.cli`; heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ikv_local.cli_docs import run_ingest
from ikv_local.cli_options import JsonOpt, ModelOpt, ThreadsOpt
from ikv_local.cli_output import err_console, excerpt, print_recalled


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

    err = err_console()
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
                  f"recalled): {excerpt(s.text, key)}", markup=False, highlight=False)
    else:
        print_recalled(out, ikv.recalled)


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
    err = err_console()
    rows, path = run_and_record(ms, ds, n_ctx=ctx_size, seeds=seeds, full_max_tokens=full_max,
                                model=model, out_dir=out, command="ikv bench passkey " + " ".join(sys.argv[3:]),
                                log=(lambda line: err.print(line, markup=False, highlight=False)))
    if json_out:
        print(json.dumps({"summary": rows, "receipt": str(path)}))
