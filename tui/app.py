"""The ikv chat TUI: sessions on the left, the conversation in the middle, memory on the right.

Everything that touches llama.cpp runs in one worker thread at a time (a lock keeps them in
line); the UI only ever receives plain data through `call_from_thread`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, ProgressBar

from ikv_local.chat import Chat, ChatSettings, memory, span_origin
from ikv_local.errors import IkvError
from ikv_local.fingerprint import model_label
from ikv_local.session import (
    DEFAULT_OPTIONS,
    OpenOptions,
    Session,
    list_sessions,
    new_session_name,
    remove_session,
    rename_session,
)
from tui.chat_view import ChatLog, HistoryInput, Said
from tui.memory_map import MapState, MemoryView
from tui.sessions import Ask, Confirm, SessionList
from tui.steer import Alternatives, MessageMenu, SearchResults

DEFAULT_SETTINGS = ChatSettings()  # frozen: one default shared by every app

FLUSH_SECONDS = 0.05  # streamed text reaches the screen in blocks, not token by token


class IkvApp(App[None]):
    TITLE = "ikv"
    CSS = """
    #main { width: 1fr; }
    #left { width: 30; }
    #left Input { margin: 0; }
    #ingest { height: 1; margin: 0 1; display: none; }
    #ingest.running { display: block; }
    HistoryInput { margin: 0 1 1 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop answer"),
        Binding("ctrl+n", "new_session", "New session"),
        Binding("f2", "rename_session", "Rename"),
        Binding("f8", "delete_session", "Delete"),
        Binding("ctrl+o", "ingest", "Ingest file"),
        Binding("ctrl+r", "retry", "Retry"),
        Binding("f4", "edit", "Edit last"),
        Binding("ctrl+z", "undo", "Undo"),
        Binding("ctrl+f", "fork", "Fork"),
        Binding("f6", "alternatives", "Alternatives"),
        Binding("f3", "search", "Search"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, session: str | None = None, options: OpenOptions = DEFAULT_OPTIONS,
                 settings: ChatSettings = DEFAULT_SETTINGS) -> None:
        """`options` open every session (its system prompt only the first); `settings` run the chat."""
        super().__init__()
        self.options = options
        self.settings = settings
        self.first_session = session
        self.session: Session | None = None
        self.chat: Chat | None = None
        self.engine_lock = threading.Lock()  # one llama.cpp job at a time
        self.cancel = threading.Event()
        self.busy = False
        self.editing = False  # the input holds the last message, to be answered again
        self.state = MapState()

    # -- layout --------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Input(placeholder="Search all sessions…", id="search")
                yield SessionList(id="sessions")
            with Vertical(id="main"):
                yield ChatLog(id="chat")
                yield ProgressBar(id="ingest", show_eta=False)
                yield HistoryInput(placeholder="Message (Enter sends · Esc stops the answer)",
                                   id="input")
            yield MemoryView(id="memory")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(MemoryView).describe = self._describe
        self._refresh_sessions()
        self.open_session(self.first_session or new_session_name(), create=True,
                          system=self.options.system)
        self.query_one(HistoryInput).focus()

    def _describe(self, span: dict[str, Any]) -> str:
        return span_origin(self.session, span) if self.session else str(span["source"])

    # -- sessions ------------------------------------------------------------------

    def _refresh_sessions(self) -> None:
        current = self.session.name if self.session else None
        self.query_one(SessionList).fill(list_sessions(), current)

    def _close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = self.chat = None

    @work(thread=True, group="engine")
    def open_session(self, name: str, create: bool = False, system: str | None = None) -> None:
        with self.engine_lock:
            self.call_from_thread(self._set_busy, True, f"opening {name}…")
            try:
                self._close()
                self.session = Session(name, replace(self.options, create=create, system=system))
                self.chat = Chat(self.session, self.settings)
                state = self._state()
                turns = list(self.session.history.turns)
            except IkvError as exc:
                self.call_from_thread(self._failed, exc)
                return
            self.call_from_thread(self._opened, state, turns)

    def _opened(self, state: MapState, turns: list[Any]) -> None:
        s = self.session
        assert s is not None
        fp = s.meta.model.fingerprint
        self.title = f"ikv · {s.name}"
        self.sub_title = (f"{model_label(fp)} · window {s.window.layout.n_ctx:,} · "
                          f"temp {self.settings.params.temperature:g} · "
                          f"max {self.settings.max_tokens} tokens")
        self._relog(turns)
        self.query_one(HistoryInput).set_history([t.user for t in turns])
        self._show(state)
        self._refresh_sessions()
        self._set_busy(False)

    def _relog(self, turns: list[Any]) -> None:
        """The conversation pane as the session's log has it (the last 50 turns)."""
        s = self.session
        assert s is not None
        log = self.query_one(ChatLog)
        log.clear()
        if s.system:
            log.note(f"system: {s.system}")
        for d in s.meta.documents:
            log.note(f"document {Path(d.path).name}: {d.tokens:,} tokens")
        for t in turns[-50:]:
            log.say("user", t.user, t.n)
            log.say("assistant", t.answer.strip(), t.n)

    def _failed(self, exc: Exception) -> None:
        self.notify(str(exc), severity="error", timeout=8)
        self._set_busy(False)
        self._refresh_sessions()

    def _set_busy(self, busy: bool, what: str = "") -> None:
        self.busy = busy
        box = self.query_one(HistoryInput)
        box.placeholder = what or "Message (Enter sends · Esc stops the answer)"

    def on_session_list_chosen(self, event: SessionList.Chosen) -> None:
        if self.busy or (self.session and event.name == self.session.name):
            return
        self.open_session(event.name)

    def action_new_session(self) -> None:
        def made(name: str | None) -> None:
            if name:
                self.open_session(name, create=True)

        self.push_screen(Ask("Name of the new session (letters, digits, . _ -):"), made)

    def action_rename_session(self) -> None:
        if self.session is None or self.busy:
            return
        old = self.session.name

        def renamed(new: str | None) -> None:
            if new and new != old:
                self._rename(old, new)

        self.push_screen(Ask(f"Rename session {old!r} to:", old), renamed)

    @work(thread=True, group="engine")
    def _rename(self, old: str, new: str) -> None:
        with self.engine_lock:
            self._close()
            try:
                rename_session(old, new)
            except IkvError as exc:
                self.call_from_thread(self.notify, str(exc), severity="error")
                new = old
        self.call_from_thread(self.open_session, new)

    def action_delete_session(self) -> None:
        if self.session is None or self.busy:
            return
        name = self.session.name

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(name)

        self.push_screen(Confirm(f"Delete session {name!r}: its turns, archive and window? "
                                 "There is no undo."), confirmed)

    @work(thread=True, group="engine")
    def _delete(self, name: str) -> None:
        with self.engine_lock:
            self._close()
            try:
                remove_session(name)
            except IkvError as exc:
                self.call_from_thread(self.notify, str(exc), severity="error")
        self.call_from_thread(self.notify, f"deleted session {name!r}")
        self.call_from_thread(self.open_session, new_session_name(), True)

    # -- turns ---------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            if event.value.strip() and not self.busy:
                self._search(event.value.strip())
            return
        if event.input.id != "input":
            return
        text = event.value.strip()
        if not text or self.busy or self.chat is None:
            if self.busy:
                self.bell()
            return
        box = self.query_one(HistoryInput)
        box.remember(text)
        box.value = ""
        how = "edit" if self.editing else "turn"
        self.editing = False
        self._start(how, text)

    def _start(self, how: str, text: str) -> None:
        """A turn (`how`: turn, retry, edit) streaming into a new pair of messages."""
        log = self.query_one(ChatLog)
        if how != "turn":  # the last turn's pair goes; the session takes it back in the worker
            pair = [w for w in log.query(Said) if w.turn is not None][-2:]
            for w in pair:
                w.remove()
        log.say("user", text)
        said = log.say("assistant", "")
        self.cancel.clear()
        self._set_busy(True, "answering… (Esc stops)")
        self.turn(text, said, how)

    @work(thread=True, group="engine")
    def turn(self, text: str, said: Said, how: str = "turn") -> None:
        shown: list[str] = []  # the answer so far, about a piece per token
        last = [time.monotonic(), 0]  # when last shown, how many pieces
        began: list[float] = []

        def flush() -> None:
            if len(shown) != last[1]:
                rate = (len(shown) - 1) / (time.monotonic() - began[0]) if len(shown) > 1 else None
                self.call_from_thread(self._stream, said, "".join(shown).lstrip(), rate)
                last[1] = len(shown)
            last[0] = time.monotonic()

        def on_text(chunk: str) -> None:
            if not began:
                began.append(time.monotonic())
            shown.append(chunk)
            if time.monotonic() - last[0] >= FLUSH_SECONDS:
                flush()

        with self.engine_lock:
            if self.chat is None:  # the session closed before this turn started
                self.call_from_thread(self._set_busy, False)
                return
            try:
                if how == "edit":
                    text = self.chat.check_question(text)
                if how != "turn":
                    self.chat.take_back_last(how)
                turn, _ = self.chat.turn(text, on_text=on_text, cancel=self.cancel)
            except IkvError as exc:
                turns = list(self.chat.session.history.turns)
                self.call_from_thread(self._relog, turns)
                self.call_from_thread(self._failed, exc)
                return
            flush()
            state = self._state()
        self.call_from_thread(self._turned, turn, state)

    def _stream(self, said: Said, text: str, rate: float | None) -> None:
        said.show(text)
        self.query_one(ChatLog).scroll_end(animate=False)
        if rate:  # the counters follow the answer while it streams
            self.query_one(MemoryView).live(replace(self.state, tokens_per_s=rate))

    def _turned(self, turn: Any, state: MapState) -> None:
        said = [w for w in self.query_one(ChatLog).query(Said)][-2:]
        for w in said:
            w.turn = turn.n
        if turn.stopped == "cancel":
            self.query_one(ChatLog).note("[stopped]")
        self._show(state)
        self._refresh_sessions()
        self._set_busy(False)

    def action_stop(self) -> None:
        self.cancel.set()
        if self.editing:
            self.editing = False
            self.query_one(HistoryInput).value = ""
            self._set_busy(self.busy)

    # -- going back: retry, edit, undo, fork, alternatives ----------------------------

    def _last_turn(self) -> Any:
        if self.session is None or self.busy or not self.session.history.turns:
            if self.session is not None and not self.busy:
                self.notify("no turn yet", severity="warning")
            return None
        return self.session.history.turns[-1]

    def action_retry(self) -> None:
        last = self._last_turn()
        if last is not None:
            self._start("retry", last.user)

    def action_edit(self) -> None:
        last = self._last_turn()
        if last is None:
            return
        box = self.query_one(HistoryInput)
        box.value = last.user
        box.cursor_position = len(box.value)
        box.focus()
        self.editing = True
        box.placeholder = "editing the last message (Enter answers again · Esc cancels)"

    def action_undo(self, turns: int = 1) -> None:
        if self._last_turn() is not None:
            self._set_busy(True, "taking back…")
            self._undo(turns)

    @work(thread=True, group="engine")
    def _undo(self, turns: int) -> None:
        with self.engine_lock:
            assert self.chat is not None
            try:
                taken = self.chat.undo(turns)
            except IkvError as exc:
                self.call_from_thread(self._failed, exc)
                return
            state, kept = self._state(), list(self.chat.session.history.turns)
        self.call_from_thread(self._relog, kept)
        self.call_from_thread(self.notify, f"took back {len(taken)} turn(s) from turn "
                              f"{taken[0].n}; they are kept as alternatives")
        self.call_from_thread(self._turned_back, state)

    def _turned_back(self, state: MapState) -> None:
        self._show(state)
        self._refresh_sessions()
        self._set_busy(False)

    def action_fork(self, at_turn: int | None = None) -> None:
        if self.session is None or self.busy:
            return
        where = f"at turn {at_turn}" if at_turn is not None else "here"

        def named(new: str | None) -> None:
            if new:
                self._set_busy(True, f"forking {new}…")
                self._fork(new, at_turn)

        self.push_screen(Ask(f"Fork {self.session.name!r} {where} into a new session named:"),
                         named)

    @work(thread=True, group="engine")
    def _fork(self, new: str, at_turn: int | None) -> None:
        with self.engine_lock:
            assert self.chat is not None
            try:
                done = self.chat.fork(new, at_turn)
            except IkvError as exc:
                self.call_from_thread(self._failed, exc)
                return
        self.call_from_thread(self.notify, f"forked {done.new!r} at turn {done.at_turn}; "
                              "choose it on the left to go on there")
        self.call_from_thread(self._turned_back, self.state)

    def action_alternatives(self, turn: int | None = None) -> None:
        from ikv_local.history import alternatives

        if self.session is None:
            return
        n = turn if turn is not None else self.session.history.last
        found = alternatives(self.session.folder, n)
        if not found:
            self.notify(f"turn {n} has no alternatives (Ctrl+R retries it)")
            return
        self.push_screen(Alternatives(n, found))

    def on_said_clicked(self, event: Said.Clicked) -> None:
        n = event.said.turn
        if n is None or self.session is None or self.busy:
            return
        last = self.session.history.last
        actions = []
        if n == last:
            actions += [("retry", "Retry: a new answer"), ("edit", "Edit this message")]
        actions += [("undo", f"Undo back to before turn {n}"),
                    ("fork", f"Fork a new session at turn {n}"),
                    ("alternatives", "Alternatives of this turn")]

        def chosen(key: str | None) -> None:
            if key == "retry":
                self.action_retry()
            elif key == "edit":
                self.action_edit()
            elif key == "undo":
                self.action_undo(last - n + 1)
            elif key == "fork":
                self.action_fork(n)
            elif key == "alternatives":
                self.action_alternatives(n)

        self.push_screen(MessageMenu(f"turn {n}", actions), chosen)

    # -- search ------------------------------------------------------------------------

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @work(thread=True, group="engine")
    def _search(self, query: str) -> None:
        from ikv_local.search import search, search_session

        with self.engine_lock:
            current = self.session.name if self.session else None
            hits = search_session(self.session, query) if self.session else []
            others = [i.name for i in list_sessions() if i.problem is None and i.name != current]
            found = search(query, others, options=replace(self.options, writable=False,
                                                          create=False, system=None))
        hits = sorted(hits + found.hits, key=lambda h: (-h.score, h.session, h.start))[:20]
        self.call_from_thread(self._found, query, hits)

    def _found(self, query: str, hits: list[Any]) -> None:
        if not hits:
            self.notify(f"nothing like {query!r} in any session", severity="warning")
            return

        def chosen(name: str | None) -> None:
            if name and (self.session is None or name != self.session.name) and not self.busy:
                self.open_session(name)

        self.push_screen(SearchResults(query, hits), chosen)

    # -- ingest --------------------------------------------------------------------

    def action_ingest(self) -> None:
        if self.session is None or self.busy:
            return

        def chosen(path: str | None) -> None:
            if path:
                self._ingest(Path(path).expanduser())

        self.push_screen(Ask("Text file to read into this session:"), chosen)

    @work(thread=True, group="engine")
    def _ingest(self, path: Path) -> None:
        from ikv_local.ingest import check_text_file, ingest

        with self.engine_lock:
            assert self.session is not None
            try:
                size = check_text_file(path)
            except IkvError as exc:
                self.call_from_thread(self._failed, exc)
                return
            self.call_from_thread(self._set_busy, True, f"reading {path.name}…")
            self.call_from_thread(self._ingest_started, size)
            last = [0.0]

            def progress(p: Any) -> None:
                if time.monotonic() - last[0] > 0.2:
                    last[0] = time.monotonic()
                    self.call_from_thread(self._ingest_progress, p.bytes_done)

            result = ingest(self.session, [path], progress)
            state = self._state()
        self.call_from_thread(self._ingested, path, result, state)

    def _ingest_started(self, size: int) -> None:
        bar = self.query_one("#ingest", ProgressBar)
        bar.update(total=size, progress=0)
        bar.add_class("running")

    def _ingest_progress(self, done: int) -> None:
        self.query_one("#ingest", ProgressBar).update(progress=done)

    def _ingested(self, path: Path, result: Any, state: MapState) -> None:
        self.query_one("#ingest", ProgressBar).remove_class("running")
        self.query_one(ChatLog).note(
            f"read {path.name}: {result.tokens:,} tokens in {result.seconds:.1f} s "
            f"({result.archived_tokens:,} archived in all)")
        self._show(state)
        self._refresh_sessions()
        self._set_busy(False)

    # -- memory ----------------------------------------------------------------------

    def _state(self) -> MapState:
        """The memory view's numbers (read in the worker, shown by the UI)."""
        s = self.session
        assert s is not None
        m = memory(s)
        last = s.history.turns[-1] if s.history.turns else None
        return MapState(
            sink=m.sink, archived=m.archived, tokens=m.tokens, n_ctx=m.n_ctx,
            window_cells=m.window_cells, archive_bytes=m.archive_bytes,
            recalled=list(last.recalled) if last else [],
            recall_ms=last.recall_seconds * 1000 if last and last.recalled else None,
            tokens_per_s=last.tokens_per_s if last else None, turns=m.turns,
        )

    def _show(self, state: MapState) -> None:
        self.state = state
        self.query_one(MemoryView).show(state)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def on_unmount(self) -> None:
        self.cancel.set()  # an answer in progress ends at its next token
        if self.engine_lock.acquire(timeout=30):
            try:
                self._close()
            finally:
                self.engine_lock.release()
