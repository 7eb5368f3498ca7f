"""`ikv search`: a thin shell over `ikv_local.search`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from ikv_local.cli_options import JsonOpt, ThreadsOpt
from ikv_local.cli_output import err_console


def search_cmd(
    text: Annotated[str, typer.Argument(help="Words to find, or what a passage is about.")],
    session: Annotated[Optional[str], typer.Option("--session", "-s", help="Search this session only (default: all).")] = None,
    most: Annotated[int, typer.Option("-n", "--max-hits", min=1, help="Hits to show.")] = 10,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search every session (or one), documents and turns, by words and by meaning."""
    from rich.console import Console
    from rich.text import Text

    from ikv_local.search import NoHits, search
    from ikv_local.session import OpenOptions, check_name

    names = [check_name(session)] if session else None
    err = err_console()
    with err.status("searching"):
        found = search(text, names, most=most,
                       options=OpenOptions(writable=False, n_threads=threads))
    for line in found.skipped:
        err.print(f"ikv: note: not searched: {line}", markup=False, highlight=False)
    if json_out:
        print(json.dumps({"query": text, "searched": found.searched, "skipped": found.skipped,
                          "hits": [h.to_dict() for h in found.hits]}))
    if not found.hits:
        raise NoHits(f"nothing like {text!r} in {len(found.searched)} session(s)")
    if json_out:
        return
    out = Console(highlight=False)
    plain = not sys.stdout.isatty()
    for hit in found.hits:
        date = hit.date[:10] if hit.date else "no date"
        out.print(f"{hit.session} · {hit.where} · {date} · {hit.how} {hit.score:.2f}",
                  style="bold", markup=False)
        passage = hit.text
        line = Text("  ")
        at = 0
        for a, b in hit.marks:
            line.append(passage[at:a])
            line.append(f"**{passage[a:b]}**" if plain else passage[a:b], style="reverse")
            at = b
        line.append(passage[at:])
        out.print(line, soft_wrap=plain)
