"""Dialogs for going back and finding things: a message's menu, a turn's alternatives, search hits."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, ListItem, ListView, OptionList, Static
from textual.widgets.option_list import Option

from ikv_local.history import Alternative
from ikv_local.search import Hit


class MessageMenu(ModalScreen[str | None]):
    """What can be done from one message: the action's id, or None."""

    DEFAULT_CSS = """
    MessageMenu { align: center middle; }
    MessageMenu > Vertical { width: 56; height: auto; border: thick $primary; padding: 1 2; background: $surface; }
    MessageMenu OptionList { height: auto; }
    """
    BINDINGS: ClassVar = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, actions: list[tuple[str, str]]) -> None:
        super().__init__()
        self.heading = title
        self.actions = actions

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.heading, markup=False)
            yield OptionList(*(Option(text, id=key) for key, text in self.actions))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Alternatives(ModalScreen[None]):
    """The answers a turn had before it was retried or edited, one at a time (← →)."""

    DEFAULT_CSS = """
    Alternatives { align: center middle; }
    Alternatives > Vertical { width: 80%; height: auto; max-height: 80%; border: thick $primary; padding: 1 2; background: $surface; }
    Alternatives .meta { color: $text-muted; margin: 0 0 1 0; }
    """
    BINDINGS: ClassVar = [Binding("left", "page(-1)", "Previous"),
                          Binding("right", "page(1)", "Next"), Binding("escape", "close", "Close")]

    def __init__(self, turn: int, found: list[Alternative]) -> None:
        super().__init__()
        self.turn = turn
        self.found = found
        self.at = len(found) - 1  # the latest taken back first

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("", id="meta", classes="meta", markup=False)
            yield Static("", id="text", markup=False)

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        alt = self.found[self.at]
        self.query_one("#meta", Label).update(
            f"turn {self.turn}, alternative {self.at + 1} of {len(self.found)} "
            f"({alt.why}, {alt.time}) · ← → pages · Esc closes")
        self.query_one("#text", Static).update(f"you: {alt.turn.user}\n\nikv: {alt.turn.answer.strip()}")

    def action_page(self, step: int) -> None:
        self.at = (self.at + step) % len(self.found)
        self._show()

    def action_close(self) -> None:
        self.dismiss(None)


class SearchResults(ModalScreen[str | None]):
    """Search hits, best first, the query's words marked; choosing one gives its session."""

    DEFAULT_CSS = """
    SearchResults { align: center middle; }
    SearchResults > Vertical { width: 90%; height: 80%; border: thick $primary; padding: 1 2; background: $surface; }
    SearchResults ListItem { padding: 0 0 1 0; }
    SearchResults .meta { color: $text-muted; }
    """
    BINDINGS: ClassVar = [("escape", "cancel", "Close")]

    def __init__(self, query: str, hits: list[Hit]) -> None:
        super().__init__()
        self.search_query = query
        self.hits = hits

    def compose(self) -> ComposeResult:
        from rich.text import Text

        with Vertical():
            yield Label(f"{len(self.hits)} hit(s) for {self.search_query!r} · Enter opens the "
                        "session · Esc closes", markup=False)
            items = []
            for hit in self.hits:
                passage = Text(hit.text)
                for a, b in hit.marks:
                    passage.stylize("reverse", a, b)
                date = hit.date[:10] if hit.date else "no date"
                items.append(ListItem(
                    Label(f"{hit.session} · {hit.where} · {date} · {hit.how} {hit.score:.2f}",
                          classes="meta", markup=False),
                    Label(passage), name=hit.session))
            yield ListView(*items)

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        self.dismiss(event.item.name)

    def action_cancel(self) -> None:
        self.dismiss(None)
