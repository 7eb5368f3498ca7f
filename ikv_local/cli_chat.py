"""`ikv chat`: the terminal chat, a thin shell over `ikv_local.chat`.

On a terminal: a prompt with line editing, streamed answers, slash commands, Ctrl-C stops an
answer and Ctrl-D leaves. Otherwise: one user turn per input line, and with `--json` one
object per turn on stdout. Input that is not valid UTF-8 is read with U+FFFD in place of the
bad bytes, with a warning (`ask.readable`); a turn too long for the window is refused with one
line on stderr, nothing of it is kept, and the chat goes on. Ctrl-C between answers, or
SIGTERM, leaves: one line says how many tokens the last checkpoint keeps.
"""

from __future__ import annotations

import json
import signal
import sys
from threading import Event
from typing import Annotated, Any, Optional

import typer

from ikv_local import interrupts
from ikv_local.cli_options import (BudgetOpt, JsonOpt, MaxKlOpt, NewCtxOpt, NglOpt, ThreadsOpt,
                                   budget_bytes, check_budget)
from ikv_local.cli_output import damage_progress, excerpt, print_plan
from ikv_local.errors import IkvError
from ikv_local.sizes import format_size

HELP = """\
/help              this list
/recall [N]        the spans recalled for the last answer (N: read span N whole)
/memory            window fill, archived tokens, bytes on disk
/history [N]       the last N turns (5)
/system [TEXT]     show the system prompt, or set a new one
/retry             a new answer to the last question (the old one is kept as an alternative)
/edit [TEXT]       change the last question and answer again (no TEXT: edit it in place)
/undo [N]          take back the last N turns (1): window, archive and log as before them
/fork NAME         a new session sharing everything up to now; this one goes on
/alternatives [N]  answers taken back from turn N (the last)
/save              checkpoint now (ikv also does after every turn)
/exit              leave (so does Ctrl-D); Ctrl-C stops an answer
A line ending in \\ continues on the next line."""

EXIT = "exit"


class Shell:
    """Reads turns and commands, prints answers; everything else is the library's."""

    def __init__(self, chat: Any, json_out: bool, interactive: bool) -> None:
        from rich.console import Console

        self.chat = chat
        self.session = chat.session
        self.json_out = json_out
        self.interactive = interactive
        self.out = Console(highlight=False)
        # command output must not mix with the JSON objects on stdout
        self.info = Console(stderr=True, highlight=False) if json_out else self.out
        self.err = self.out if interactive else Console(stderr=True, highlight=False)

    # -- turns ---------------------------------------------------------------------

    def turn(self, text: str, how: str = "turn") -> None:
        from ikv_local.ask import QuestionTooLong
        from ikv_local.chat import span_origin
        from ikv_local.stream import FirstTextTrimmed

        cancel = Event()
        trimmed = FirstTextTrimmed()

        def show(chunk: str) -> None:
            chunk = trimmed(chunk)
            if chunk:
                self.out.print(chunk, end="", markup=False, soft_wrap=True)

        old = signal.signal(signal.SIGINT, lambda *_: cancel.set()) if self.interactive else None
        try:
            kw = {"on_text": None if self.json_out else show, "cancel": cancel}
            turn, answer = (self.chat.retry(**kw) if how == "retry" else
                            self.chat.edit(text, **kw) if how == "edit" else
                            self.chat.turn(text, **kw))
        except QuestionTooLong as exc:  # refused before anything was read: the chat goes on
            self.err.print(f"ikv: error: {exc}", style="red" if self.interactive else None,
                           markup=False, soft_wrap=True)
            return
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        if self.json_out:
            print(json.dumps({
                "turn": turn.n, "user": turn.user, "answer": turn.answer.strip(),
                "recalled": turn.recalled, "window_tokens": answer.window_tokens,
                "archived_tokens": answer.archived_tokens, "tokens_per_s": turn.tokens_per_s,
                "ttft_seconds": turn.ttft_seconds, "recall_seconds": turn.recall_seconds,
                "tokens": turn.tokens, "stopped": turn.stopped, "session": self.session.name,
            }), flush=True)
            return
        if turn.stopped == "cancel":
            self.out.print(" [stopped]", style="yellow", end="", markup=False)
        self.out.print()
        if not self.interactive:
            return
        parts = []
        if turn.recalled:
            where = sorted({span_origin(self.session, s) for s in turn.recalled})
            parts.append(f"recalled {len(turn.recalled)} span(s) from {'; '.join(where)} (/recall)")
        parts.append(f"first token {turn.ttft_seconds:.2f} s")
        if turn.tokens_per_s:
            parts.append(f"{turn.tokens_per_s:.1f} tok/s")
        self.out.print(" · ".join(parts), style="dim", markup=False)

    # -- commands ------------------------------------------------------------------

    def command(self, line: str) -> str | None:
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        handler = {
            "help": self.help, "h": self.help, "?": self.help,
            "recall": self.recall, "r": self.recall,
            "memory": self.memory, "m": self.memory,
            "history": self.history,
            "system": self.system,
            "save": self.save,
            "retry": self.retry,
            "edit": self.edit,
            "undo": self.undo,
            "fork": self.fork,
            "alternatives": self.alternatives, "alt": self.alternatives,
        }.get(name.lower())
        if name.lower() in {"exit", "quit", "q", "bye"}:
            return EXIT
        if handler is None:
            self.info.print(f"unknown command /{name}; /help lists them", markup=False)
            return None
        handler(arg)
        return None

    def help(self, _: str) -> None:
        self.info.print(HELP, markup=False)

    def recall(self, arg: str) -> None:
        from rich.table import Table

        from ikv_local.chat import span_origin

        last = self.chat.last
        if last is None or not last.recalled:
            self.info.print("nothing was recalled for the last answer"
                            + ("" if self.session.window.archived else
                               " (nothing has left the window yet)"))
            return
        spans = sorted(last.recalled, key=lambda s: -s["score"])
        if arg:
            try:
                span = spans[int(arg) - 1]
            except (ValueError, IndexError):
                self.info.print(f"/recall N takes 1 to {len(spans)}")
                return
            self.info.print(f"{span_origin(self.session, span)}, tokens {span['start']:,}–"
                            f"{span['end']:,}, score {span['score']:.3f}", style="bold", markup=False)
            self.info.print(span["text"], markup=False)
            return
        table = Table(title=f"recalled for turn {last.n}, best first")
        for col in ("#", "from", "tokens", "score", "text"):
            table.add_column(col, justify="right" if col in {"#", "score"} else "left")
        for i, s in enumerate(spans, 1):
            table.add_row(str(i), span_origin(self.session, s), f"{s['start']:,}–{s['end']:,}",
                          f"{s['score']:.3f}", excerpt(s["text"], width=70))
        self.info.print(table)

    def memory(self, _: str) -> None:
        from rich.table import Table

        from ikv_local.chat import memory

        m = memory(self.session)
        table = Table(title=f"session {self.session.name}", show_header=False)
        table.add_row("window", f"{m.window_cells:,} of {m.n_ctx:,} cells ({m.window_cells / m.n_ctx:.0%})")
        table.add_row("  sink", f"{m.sink:,} (BOS and system prompt)")
        table.add_row("  recall slot", f"{m.slot:,} of {m.slot_capacity:,}")
        table.add_row("  recent", f"{m.recent:,} of {m.recent_capacity:,}")
        table.add_row("archived", f"{m.archived:,} tokens, {format_size(m.archive_bytes)} on disk")
        table.add_row("saved window", format_size(m.window_file_bytes))
        table.add_row("in all", f"{m.tokens:,} tokens; turns: {m.turns}; documents: {m.documents}")
        self.info.print(table)

    def history(self, arg: str) -> None:
        n = int(arg) if arg.isdigit() else 5
        turns = self.session.history.turns[-n:]
        if not turns:
            self.info.print("no turns yet")
        for t in turns:
            self.info.print(f"[{t.n}] you: {t.user}", markup=False, style="bold")
            self.info.print(f"    ikv: {t.answer.strip()}", markup=False)

    def system(self, arg: str) -> None:
        if not arg:
            self.info.print(f"system prompt: {self.session.system!r}" if self.session.system
                            else "no system prompt (set one with /system TEXT)", markup=False)
            return
        recent = len(self.session.window.recent)
        self.session.set_system(arg)
        self.session.save()
        self.info.print(f"system prompt set ({self.session.window.layout.sink:,} sink tokens); "
                        f"the {recent:,} recent tokens were read again after it", markup=False)

    def retry(self, _: str) -> None:
        self.turn("", how="retry")

    def edit(self, arg: str) -> None:
        last = self.chat.last
        if not arg and last is not None and self.interactive:
            import readline

            readline.set_startup_hook(lambda: readline.insert_text(last.user))
            try:
                arg = input("edit> ")
            finally:
                readline.set_startup_hook()
        if not arg.strip():
            self.info.print("/edit TEXT: the new words for the last question", markup=False)
            return
        self.turn(arg, how="edit")

    def undo(self, arg: str) -> None:
        from ikv_local.checkpoint import SessionError

        if arg and not arg.isdigit():
            raise SessionError(f"/undo takes a number of turns: {arg!r}")
        taken = self.chat.undo(int(arg) if arg else 1)
        first = taken[0].n
        which = f"turn {first}" if len(taken) == 1 else f"turns {first}–{taken[-1].n}"
        self.info.print(f"took back {which} (kept as alternatives, /alternatives {first}); "
                        f"the window holds {self.session.window.stream_end:,} tokens as before "
                        f"turn {first}", markup=False)

    def fork(self, arg: str) -> None:
        from ikv_local.checkpoint import SessionError

        if not arg:
            raise SessionError("/fork NAME: the new session's name")
        self.chat.fork(arg)
        self.info.print(f"forked session {arg!r} at turn {self.session.history.last}; this chat "
                        f"goes on in {self.session.name!r}; resume the fork with: ikv chat "
                        f"--session {arg}", markup=False)

    def alternatives(self, arg: str) -> None:
        from ikv_local.history import alternatives

        n = int(arg) if arg.isdigit() else (self.chat.last.n + 1 if self.chat.last else 1)
        found = alternatives(self.session.folder, n)
        if not found and not arg.isdigit():  # after /undo: the turns just taken back
            n -= 1
            found = alternatives(self.session.folder, n)
        if not found:
            self.info.print(f"turn {n} has no alternatives", markup=False)
            return
        for i, alt in enumerate(found, 1):
            self.info.print(f"[{n}.{i}] ({alt.why}, {alt.time}) you: {alt.turn.user}",
                            markup=False, style="bold")
            self.info.print(f"    ikv: {alt.turn.answer.strip()}", markup=False)

    def save(self, _: str) -> None:
        self.session.save()
        self.info.print(f"saved session {self.session.name!r} (turns: {len(self.session.history)}) "
                        f"in {self.session.folder}", markup=False)

    # -- loops ---------------------------------------------------------------------

    def piped(self) -> None:
        from ikv_local.ask import readable

        for raw in sys.stdin:
            line = readable(raw.rstrip("\n"), "a line of input")
            if not line.strip():
                continue
            if line.lstrip().startswith("/"):
                if self.command(line.strip()) == EXIT:
                    return
                continue
            self.turn(line)

    def interactive_loop(self) -> None:
        import readline  # line editing and history for input()

        from ikv_local.ask import readable

        for t in self.session.history.turns[-100:]:
            readline.add_history(t.user)
        while True:
            try:
                line = input("> ")
                while line.endswith("\\"):
                    line = line[:-1] + "\n" + input("… ")
            except EOFError:
                self.out.print()
                return
            except KeyboardInterrupt as exc:
                if isinstance(exc, interrupts.Stopped) and exc.signum != signal.SIGINT:
                    raise  # SIGTERM leaves
                self.out.print("\n(Ctrl-D or /exit leaves)", style="dim")
                continue
            line = readable(line, "a line of input")
            if not line.strip():
                continue
            if line.lstrip().startswith("/"):
                try:
                    if self.command(line.strip()) == EXIT:
                        return
                except IkvError as exc:  # a refused command leaves the chat as it was
                    self.out.print(f"ikv: error: {exc}", style="red", markup=False)
                continue
            self.turn(line)


def chat_cmd(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="GGUF model; the session's own, or the demo model.")] = None,
    session: Annotated[Optional[str], typer.Option("--session", help="Session to resume or make (default: a new one).")] = None,
    model_opt: Annotated[Optional[str], typer.Option("-m", "--model", help="GGUF model (same as the argument).")] = None,
    system: Annotated[Optional[str], typer.Option("-s", "--system", help="System prompt (kept in the attention sink).")] = None,
    ctx_size: NewCtxOpt = None,
    n_gpu_layers: NglOpt = 0,
    threads: ThreadsOpt = None,
    max_tokens: Annotated[int, typer.Option("-n", "--max-tokens", help="Answer length cap (-1: until the model stops).")] = 512,
    temp: Annotated[float, typer.Option("--temp", help="Temperature (0: greedy).")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k")] = 40,
    top_p: Annotated[float, typer.Option("--top-p")] = 0.95,
    min_p: Annotated[float, typer.Option("--min-p")] = 0.05,
    repeat_penalty: Annotated[float, typer.Option("--repeat-penalty", help="1.0: off (llama.cpp's default).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (-1: random).")] = -1,
    no_recall: Annotated[bool, typer.Option("--no-recall", help="Never recall (a sliding window).")] = False,
    recall_every: Annotated[int, typer.Option("--recall-every", min=0, help="Refresh recall every N generated tokens (0: once per turn).")] = 0,
    kv_budget: BudgetOpt = None,
    max_kl: MaxKlOpt = None,
    json_out: JsonOpt = False,
    tui: Annotated[bool, typer.Option("--tui", help="The Textual chat app (same as ikv tui).")] = False,
) -> None:
    """Chat with a model that never forgets: every turn is kept, the session resumes."""
    from ikv_local.budget import plan_session
    from ikv_local.chat import Chat, ChatSettings
    from ikv_local.sampling import SamplingParams
    from ikv_local.session import OpenOptions, Session, check_name, new_session_name, session_exists

    if model and model_opt and model != model_opt:
        raise typer.BadParameter("name the model once (argument or --model)", param_hint="-m")
    params = SamplingParams(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                            repeat_penalty=repeat_penalty, seed=0xFFFFFFFF if seed < 0 else seed)
    settings = ChatSettings(max_tokens=max_tokens, params=params, recall=not no_recall,
                            recall_every=recall_every)
    budget = budget_bytes(kv_budget)
    name = check_name(session) if session else new_session_name()
    exists = session_exists(name)
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    with damage_progress(err) as show:
        shape = plan_session(name, model or model_opt, budget, n_ctx=ctx_size, max_kl=max_kl,
                             n_threads=threads, n_gpu_layers=n_gpu_layers, progress=show)
    if shape.plan is not None:
        print_plan(err, shape.plan)
    options = OpenOptions(model=model or model_opt, n_ctx=shape.n_ctx, n_threads=threads,
                          n_gpu_layers=n_gpu_layers, create=True, system=system,
                          type_k=shape.type_k, type_v=shape.type_v)
    if tui or ctx.info_name == "tui":
        from tui.app import IkvApp

        # the app has its own ways to leave; SIGTERM ends it at once, as it always did
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        IkvApp(check_name(session) if session else None, options, settings).run()
        return
    interactive = sys.stdin.isatty() and not json_out
    if hasattr(sys.stdin, "reconfigure"):  # bad bytes reach `readable`, not a UnicodeDecodeError
        sys.stdin.reconfigure(errors="surrogateescape")
    with err.status("loading model and session"):
        s = Session(name, options)
    with s:
        try:
            check_budget(s, kv_budget)
            if exists and ctx_size and ctx_size != s.window.layout.n_ctx:
                err.print(f"ikv: note: session {name!r} keeps its window of "
                          f"{s.window.layout.n_ctx:,} tokens", markup=False)
            chat = Chat(s, settings)
            shell = Shell(chat, json_out, interactive)
            if interactive:
                _banner(shell, exists)
                shell.interactive_loop()
                err.print(f"session {name!r} saved (turns: {len(s.history)}); resume with: "
                          f"ikv chat --session {name}", markup=False)
            else:
                shell.piped()
        except KeyboardInterrupt as exc:  # every completed turn was checkpointed
            interrupts.note_kept(exc, s.meta.tokens)
            raise


def _banner(shell: Shell, resumed: bool) -> None:
    from rich.markup import escape

    from ikv_local.fingerprint import model_label

    s = shell.session
    fp = s.meta.model.fingerprint
    m = s.window
    out = shell.out
    what = "resumed" if resumed else "new"
    out.print(f"[bold]ikv chat[/] · {model_label(fp)} · window {m.layout.n_ctx:,} "
              f"tokens · {what} session [bold]{s.name}[/]")
    if resumed:
        docs = len(s.meta.documents)
        out.print(f"[dim]turns: {len(s.history)}, documents: {docs}, {m.stream_end:,} tokens "
                  f"({m.archived:,} archived)[/]")
        last = shell.chat.last
        if last is not None:
            out.print(f"[dim]last turn {last.n}: you: {escape(excerpt(last.user, width=70))}\n"
                      f"  ikv: {escape(excerpt(last.answer.strip(), width=70))}[/]")
    if s.system:
        out.print(f"[dim]system: {escape(excerpt(s.system, width=70))}[/]")
    out.print("[dim]/help for commands · Ctrl-C stops an answer · Ctrl-D leaves[/]")
