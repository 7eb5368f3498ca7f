"""The sessions sidebar and the small dialogs around it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from ikv_local.session import SessionInfo


class SessionList(ListView):
    """Sessions on disk, newest first; choosing one opens it."""

    DEFAULT_CSS = """
    SessionList { width: 30; border-right: solid $primary-background; }
    SessionList ListItem { padding: 0 1; }
    SessionList .meta { color: $text-muted; }
    """

    class Chosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def fill(self, infos: list[SessionInfo], current: str | None) -> None:
        self.clear()
        for info in infos:  # list_sessions' order: newest first
            meta = (f"{info.turns} turns · {info.documents} docs · {info.tokens:,} tok"
                    if not info.problem else info.problem)
            item = ListItem(Label(info.name, markup=False), Label(meta, classes="meta", markup=False),
                            name=info.name)
            self.append(item)
        names = [i.name for i in infos]
        if current in names:
            self.index = names.index(current)

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if event.item.name:
            self.post_message(self.Chosen(event.item.name))


class Ask(ModalScreen[str | None]):
    """One line of text (a session name, a file path); Escape cancels."""

    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical { width: 64; height: auto; border: thick $primary; padding: 1 2; background: $surface; }
    Ask Label { margin: 0 0 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt, markup=False)
            yield Input(value=self.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 64; height: auto; border: thick $error; padding: 1 2; background: $surface; }
    Confirm Horizontal { height: auto; margin: 1 0 0 0; }
    Confirm Button { margin: 0 2 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "no", "Cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            with Horizontal():
                yield Button("Delete", variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_no(self) -> None:
        self.dismiss(False)
