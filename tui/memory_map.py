"""The memory view: one map of everything the session holds, the recalled spans, counters.

The map is the whole token stream folded into rows of cells. A cell is archived (on disk,
recallable), hot (in the window), or recalled (archived and back in the recall slot for the
last answer); the sink (BOS and system prompt) is drawn first, apart from the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

STYLES = {"sink": "bold magenta", "archived": "blue", "hot": "green", "recalled": "bold yellow"}
CELL = "█"


@dataclass(frozen=True)
class MapState:
    """What the map draws; plain numbers, so it renders without a model."""

    sink: int = 0
    archived: int = 0
    tokens: int = 0  # the whole stream (archived + hot)
    n_ctx: int = 0
    window_cells: int = 0
    archive_bytes: int = 0
    recalled: list[dict[str, Any]] = field(default_factory=list)  # Span.to_dict()
    recall_ms: float | None = None
    tokens_per_s: float | None = None
    turns: int = 0


def cell_kinds(state: MapState, cells: int) -> list[str]:
    """The kind of each of `cells` cells covering the stream, in order."""
    if state.tokens <= 0 or cells <= 0:
        return []
    per = state.tokens / cells
    spans = [(int(s["start"]), int(s["end"])) for s in state.recalled]
    kinds = []
    for i in range(cells):
        lo, hi = i * per, (i + 1) * per
        if any(a < hi and b > lo for a, b in spans):
            kinds.append("recalled")
        elif hi <= state.archived:
            kinds.append("archived")
        elif lo >= state.archived:
            kinds.append("hot")
        else:  # the boundary cell: whichever holds most of it
            kinds.append("archived" if state.archived - lo >= hi - state.archived else "hot")
    return kinds


def render_map(state: MapState, width: int, rows: int) -> Text:
    text = Text()
    if state.tokens <= 0:
        return Text("nothing read or said yet", style="dim")
    text.append(CELL * 2, STYLES["sink"])
    text.append(" ")
    width = max(8, width - 3)
    cells = min(width * rows, max(1, state.tokens))
    kinds = cell_kinds(state, cells)
    for i, kind in enumerate(kinds):
        if i and i % width == 0:
            text.append("\n   ")
        text.append(CELL, STYLES[kind])
    return text


def legend(state: MapState) -> Text:
    text = Text()
    for kind, label in (("sink", f"sink {state.sink:,}"),
                        ("archived", f"archived {state.archived:,}"),
                        ("hot", f"in the window {state.tokens - state.archived:,}"),
                        ("recalled", f"recalled {sum(s['end'] - s['start'] for s in state.recalled):,}")):
        text.append(CELL, STYLES[kind])
        text.append(f" {label}  ")
    return text


def counters(state: MapState) -> Text:
    fill = state.window_cells / state.n_ctx if state.n_ctx else 0.0
    size = state.archive_bytes / 2**20
    recall = "—" if state.recall_ms is None else f"{state.recall_ms:,.0f} ms"
    speed = "—" if not state.tokens_per_s else f"{state.tokens_per_s:.1f} tok/s"
    return Text.assemble(
        ("window ", "dim"), f"{state.window_cells:,}/{state.n_ctx:,} ({fill:.0%})",
        ("  turns ", "dim"), f"{state.turns:,}",
        ("\narchived ", "dim"), f"{state.archived:,} tokens, {size:,.1f} MiB on disk",
        ("\nrecall ", "dim"), recall, ("  speed ", "dim"), speed,
    )


class MemoryMap(Static):
    """The map itself; redraws at its own width."""

    state: reactive[MapState] = reactive(MapState, always_update=True)

    def render(self) -> Text:
        rows = max(2, self.size.height)
        return render_map(self.state, self.size.width or 40, rows)


class MemoryView(Vertical):
    """Counters, map, legend, and the spans recalled for the last answer."""

    class SpanChosen(Message):
        def __init__(self, span: dict[str, Any]) -> None:
            super().__init__()
            self.span = span

    DEFAULT_CSS = """
    MemoryView { width: 46; border-left: solid $primary-background; padding: 0 1; }
    MemoryView #counters { height: 3; }
    MemoryView MemoryMap { height: 8; margin: 1 0 0 0; }
    MemoryView #legend { height: 2; }
    MemoryView #spans { height: 1fr; min-height: 4; }
    MemoryView #span-text { height: auto; max-height: 12; border-top: solid $primary-background; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spans: list[dict[str, Any]] = []
        self.describe = lambda span: str(span["source"])  # set by the app: span -> where from

    def compose(self) -> ComposeResult:
        yield Static(id="counters")
        yield MemoryMap()
        yield Static(id="legend")
        yield OptionList(id="spans")
        yield Static("select a recalled span to read it", id="span-text")

    def show(self, state: MapState) -> None:
        self.query_one("#counters", Static).update(counters(state))
        self.query_one(MemoryMap).state = state
        self.query_one("#legend", Static).update(legend(state))
        self._spans = sorted(state.recalled, key=lambda s: -s["score"])
        spans = self.query_one("#spans", OptionList)
        spans.clear_options()
        spans.border_title = f"recalled for the last answer ({len(self._spans)})"
        for i, s in enumerate(self._spans):
            spans.add_option(Option(f"{s['score']:.3f}  {self.describe(s)}  "
                                    f"{s['start']:,}–{s['end']:,}", id=str(i)))

    def live(self, state: MapState) -> None:
        """Counters only, while an answer streams."""
        self.query_one("#counters", Static).update(counters(state))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._read(event.option_index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._read(event.option_index)

    def _read(self, index: int) -> None:
        if not 0 <= index < len(self._spans):
            return
        span = self._spans[index]
        head = Text(f"{self.describe(span)}, tokens {span['start']:,}–{span['end']:,}, "
                    f"score {span['score']:.3f}\n", style="bold")
        self.query_one("#span-text", Static).update(head + Text(" ".join(str(span["text"]).split())))
        self.post_message(self.SpanChosen(span))
