"""The chat pane: messages as markdown, and an input that remembers what was sent."""

from __future__ import annotations

import re
from typing import Any

from textual import events
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Markdown, Static

_LIST_START = re.compile(r"^(\s*\d{1,9})([.)])", re.MULTILINE)


def as_markdown(text: str) -> str:
    """Model text for the markdown widget: a line that starts with a number and a dot is
    a number (an answer of "191644." is not an empty numbered list)."""
    return _LIST_START.sub(r"\1\\\2", text)


class Said(Markdown):
    """One message; the assistant's grows while it streams. A click asks for its menu."""

    class Clicked(Message):
        def __init__(self, said: Said) -> None:
            super().__init__()
            self.said = said

    def __init__(self, text: str, *, turn: int | None = None, **kwargs: Any) -> None:
        super().__init__(text, **kwargs)
        self.turn = turn  # the turn this message belongs to (None: not logged yet)

    def show(self, text: str) -> None:
        self.update(as_markdown(text))

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Clicked(self))

    DEFAULT_CSS = """
    Said { margin: 0 0 1 0; padding: 0 1; }
    Said.user { background: $boost; border-left: thick $accent; }
    Said.assistant { border-left: thick $success; }
    """


class ChatLog(VerticalScroll):
    DEFAULT_CSS = """
    ChatLog { height: 1fr; padding: 0 1; }
    ChatLog .note { color: $text-muted; margin: 0 0 1 0; }
    """

    def say(self, role: str, text: str, turn: int | None = None) -> Said:
        said = Said(as_markdown(text), classes=role, turn=turn)
        self.mount(said)
        self.scroll_end(animate=False)
        return said

    def note(self, text: str) -> None:
        self.mount(Static(text, classes="note", markup=False))
        self.scroll_end(animate=False)

    def clear(self) -> None:
        self.remove_children()


class HistoryInput(Input):
    """Up and down walk through what was sent before."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sent: list[str] = []
        self._at = 0

    def remember(self, text: str) -> None:
        if text and (not self.sent or self.sent[-1] != text):
            self.sent.append(text)
        self._at = len(self.sent)

    def set_history(self, texts: list[str]) -> None:
        self.sent = list(texts)
        self._at = len(self.sent)

    def _on_key(self, event: events.Key) -> None:
        if event.key in ("up", "down") and self.sent:
            step = -1 if event.key == "up" else 1
            self._at = max(0, min(len(self.sent), self._at + step))
            self.value = self.sent[self._at] if self._at < len(self.sent) else ""
            self.cursor_position = len(self.value)
            event.prevent_default()
            event.stop()
