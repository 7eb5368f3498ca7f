"""The hot window on sequence 0: [sink][recall slot][recent tokens][headroom].

Positions, not cells, carry the layout: the sink holds positions [0, sink), the slot
[sink, sink + slot) and recent tokens start at `recent_start`. New tokens must follow the
sequence's last position, so the slot is decoded on its own sequence (holding a copy of the
sink) and then tagged into sequence 0. Before recent tokens would eat the headroom, the
oldest blocks are filed into the archive, removed, and the rest shifted down.

llama.cpp re-ropes shifted keys only at the next decode, so nothing reads the cache between a
shift and that decode: aging files every block it needs first, then shifts once.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ikv_local.archive import Archive
from ikv_local.engine import Engine
from ikv_local.errors import EngineError, IkvError
from ikv_local.filing import Origin, file_records, sketch_cells
from ikv_local.metadata import WindowHeader
from ikv_local.recall import decoded_beside_the_sink
from ikv_local.record import SKETCH_BYTES, Role
from ikv_local.sequences import N_SEQ, RECALL_SEQ, WINDOW_SEQ
from ikv_local.sketch import SketchSpec


class WindowTooSmall(IkvError):
    exit_code = 3


SLOT_MAX = 2048  # a larger slot recalled no more in scripts/slot_cap.py and cost seconds per question


@dataclass(frozen=True)
class Layout:
    n_ctx: int
    sink: int
    slot: int
    headroom: int
    block: int

    @classmethod
    def plan(cls, n_ctx: int, sink: int, *, slot: int | None = None,
             headroom: int | None = None) -> Layout:
        """Default slot: a quarter of the window, at most SLOT_MAX; headroom for a question and an answer."""
        slot = min(n_ctx // 4, SLOT_MAX) if slot is None else slot
        headroom = max(64, n_ctx // 8) if headroom is None else headroom
        block = max(16, n_ctx // 8)
        layout = cls(n_ctx, sink, slot, headroom, block)
        if layout.recent_capacity < 2 * block:
            raise WindowTooSmall(
                f"a context of {n_ctx} tokens leaves {layout.recent_capacity} for recent text after "
                f"the sink ({sink}), recall slot ({slot}) and headroom ({headroom}); use a larger -c"
            )
        return layout

    @property
    def recent_start(self) -> int:
        return self.sink + self.slot

    @property
    def recent_capacity(self) -> int:
        return self.n_ctx - self.sink - self.slot - self.headroom

    def to_dict(self) -> dict[str, int]:
        return {"n_ctx": self.n_ctx, "sink": self.sink, "slot": self.slot,
                "headroom": self.headroom, "block": self.block}


@dataclass
class Recent:
    """What the cache cells of the recent part hold; KV cells carry no token ids."""

    tokens: list[int] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, tokens: list[int], role: int, source: int, segment: int) -> None:
        self.tokens += tokens
        self.roles += [role] * len(tokens)
        self.sources += [source] * len(tokens)
        self.segments += [segment] * len(tokens)

    def drop(self, n: int) -> None:
        """Forget the first n."""
        for part in (self.tokens, self.roles, self.sources, self.segments):
            del part[:n]

    def keep(self, n: int) -> None:
        """Forget all but the first n."""
        for part in (self.tokens, self.roles, self.sources, self.segments):
            del part[n:]

    def runs(self, n: int) -> list[tuple[int, int]]:
        """[start, end) runs of the first n tokens that share one origin."""
        keys = list(zip(self.roles[:n], self.sources[:n], self.segments[:n]))
        out, start = [], 0
        for i in range(1, n + 1):
            if i == n or keys[i] != keys[start]:
                out.append((start, i))
                start = i
        return out

    def to_dict(self) -> dict[str, list[int]]:
        return {"tokens": self.tokens, "roles": self.roles, "sources": self.sources,
                "segments": self.segments}


class Window:
    """Sequence 0 of `engine`, kept inside its context by filing old blocks into `archive`.

    With `archive=None` aged blocks are dropped (a transient window, like llama.cpp's context
    shift); ikv uses that only for throwaway turns of a saved session.
    """

    def __init__(self, engine: Engine, layout: Layout, archive: Archive | None,
                 spec: SketchSpec | None) -> None:
        if not engine.facts.can_shift:
            raise EngineError(
                f"{engine.facts.arch} models cannot shift their KV cache, so ikv cannot roll "
                "their window"
            )
        if engine.config.n_seq_max < N_SEQ:
            raise EngineError(f"the window needs an engine with {N_SEQ} sequences")
        if layout.n_ctx > engine.n_ctx:
            raise EngineError(f"layout for {layout.n_ctx} cells, context has {engine.n_ctx}")
        self.engine = engine
        self.layout = layout
        self.archive = archive
        self.spec = spec
        self.sink_tokens: list[int] = []
        self.recent = Recent()
        self.archived = 0  # stream position of recent.tokens[0]
        self.previous_token: int | None = None  # the last token filed, for boundary flags
        self.slot_used = 0
        self.slot_tokens: list[int] | None = []  # what the slot holds (None: not known)
        self.lent = 0  # the empty slot's cells, lent to recent tokens for a turn (`lending`)
        self.dropped = 0  # tokens aged out without an archive
        self._shift_pending = False
        # sketches of the oldest recent tokens, taken while sliding-window layers still hold them
        self.sketches = np.zeros((0, SKETCH_BYTES), np.uint8)
        swa = engine.facts.n_swa if engine.facts.swa_layers else 0
        self._lag = min(layout.block, swa // 4) if swa else layout.block
        self._reach = swa - 16 if swa else 1 << 62  # unsketched tokens must stay within this
        # a slot prefix is kept only where no layer drops its cells: a sliding-window layer
        # reuses cells that slid out of the window (memory.md), so the slot's may be gone
        self._keeps_slot = not swa or layout.n_ctx <= swa

    # -- building --------------------------------------------------------------

    def start(self, sink_tokens: list[int]) -> None:
        if len(sink_tokens) != self.layout.sink:
            raise EngineError(f"sink of {len(sink_tokens)} tokens, layout has {self.layout.sink}")
        self.engine.clear()
        self.engine.decode(sink_tokens, 0, logits_last=False)
        self.sink_tokens = list(sink_tokens)

    @property
    def next_pos(self) -> int:
        return self.layout.recent_start + len(self.recent)

    @property
    def cells(self) -> int:
        return self.layout.sink + self.slot_used + len(self.recent)

    @property
    def stream_end(self) -> int:
        """Tokens this window has seen in all (archived + recent)."""
        return self.archived + self.dropped + len(self.recent)

    def append(self, tokens: list[int], origin: Origin, *, logits_last: bool = False) -> None:
        """Decode tokens at the end of the window, aging blocks as needed."""
        step = self.layout.block
        for start in range(0, len(tokens), step):
            chunk = tokens[start : start + step]
            last = logits_last and start + step >= len(tokens)
            if self._unsketched and self._unsketched + len(chunk) > self._reach:
                self._sketch_pending()
            self.make_room(len(chunk))
            pos = self.next_pos
            follows = self.engine.seq_pos_range(0)[1] + 1 if not self.recent.tokens else pos
            # llama.cpp takes new tokens only right after the last one held, so the first
            # recent tokens are decoded after the sink (or slot) and then moved up
            self.engine.decode(chunk, follows, logits_last=last)
            self._shift_pending = False
            self.recent.extend(chunk, int(origin.role), origin.source, origin.segment)
            if self.archive is not None and self._unsketched >= self._lag:
                self._sketch_pending(at=follows - pos)
            if follows != pos:
                self.engine.seq_add(0, follows, -1, pos - follows)
                self._shift_pending = True

    @property
    def _unsketched(self) -> int:
        return len(self.recent) - len(self.sketches) if self.archive is not None else 0

    def _sketch_pending(self, at: int = 0) -> None:
        """Sketch recent tokens not yet sketched (their cells sit `at` below their place)."""
        if self._shift_pending:
            raise EngineError("cannot read cells whose shift llama.cpp has not applied yet")
        assert self.spec is not None
        done = len(self.sketches)
        new = sketch_cells(self.engine, self.spec, self.layout.recent_start + done + at,
                           len(self.recent) - done)
        self.sketches = np.concatenate([self.sketches, new])

    def make_room(self, n: int) -> None:
        """Age whole blocks until n more tokens fit before the headroom (and in what is lent)."""
        over = len(self.recent) + n - self.layout.recent_capacity - self.lent
        if over <= 0:
            return
        block = self.layout.block
        self.age(min(len(self.recent), -(-over // block) * block))

    def age(self, n: int) -> None:
        """File the oldest n recent tokens, then remove them and shift the rest down once."""
        if n <= 0:
            return
        p0 = self.layout.recent_start
        if self.archive is not None:
            if len(self.sketches) < n:
                self._sketch_pending()
            for a, b in self.recent.runs(n):
                origin = Origin(Role(self.recent.roles[a]), self.recent.sources[a],
                                self.recent.segments[a])
                file_records(self.engine, self.archive, self.recent.tokens[a:b],
                             self.sketches[a:b], self.archived + self.dropped + a, origin,
                             previous_token=self.previous_token if a == 0 else self.recent.tokens[a - 1])
            self.sketches = self.sketches[n:]
            self.archived += n
        else:
            self.dropped += n
        self.previous_token = self.recent.tokens[n - 1]
        self.engine.seq_rm(0, p0, p0 + n)
        if n < len(self.recent):
            self.engine.seq_add(0, p0 + n, -1, -n)
            self._shift_pending = True
        self.recent.drop(n)

    def truncate(self, length: int) -> None:
        """Forget recent tokens past `length` (a turn that will not be kept)."""
        if length < len(self.recent):
            self.engine.seq_rm(0, self.layout.recent_start + length, -1)
            self.recent.keep(length)
            self.sketches = self.sketches[:length]

    def rebuilt(self, sink_tokens: list[int], layout: Layout) -> Window:
        """This stream with another sink: the recent tokens are decoded again after it."""
        new = Window(self.engine, layout, self.archive, self.spec)
        new.start(sink_tokens)
        new.archived, new.dropped = self.archived, self.dropped
        new.previous_token = self.previous_token
        old = self.recent
        for a, b in old.runs(len(old)):
            new.append(old.tokens[a:b], Origin(Role(old.roles[a]), old.sources[a], old.segments[a]))
        return new

    # -- the recall slot -----------------------------------------------------------

    def fill_slot(self, tokens: list[int]) -> None:
        """Replace the slot's content; tokens see the sink and each other, nothing recent.

        The slot tokens already there that `tokens` starts with stay: decoded again they would
        see the same sink and tokens (the cells differ only by another batch split's rounding).
        Turns often recall the same first spans. Not in a window wider than a sliding window.
        """
        if len(tokens) > self.layout.slot:
            raise EngineError(f"{len(tokens)} tokens for a recall slot of {self.layout.slot}")
        held = self.slot_tokens if self.slot_tokens is not None and self._keeps_slot else []
        keep = next((i for i, (a, b) in enumerate(zip(held, tokens)) if a != b),
                    min(len(held), len(tokens)))
        sink = self.layout.sink
        if keep < self.slot_used:
            self.engine.seq_rm(WINDOW_SEQ, sink + keep, self.layout.recent_start)
        self.slot_used, self.slot_tokens = keep, list(tokens[:keep])
        if keep == len(tokens):
            return
        with decoded_beside_the_sink(self.engine, sink, tokens[keep:], after=keep):
            self._shift_pending = False
            self.engine.seq_cp(RECALL_SEQ, WINDOW_SEQ, sink + keep, sink + len(tokens))
        self.slot_used, self.slot_tokens = len(tokens), list(tokens)

    @contextmanager
    def lending(self, n: int) -> Iterator[None]:
        """Recent tokens may take `n` cells of the emptied slot while the block runs: a turn
        that will be taken back, whose recalled text is decoded beside its question. The
        window is over its room afterwards until the turn is truncated (or the next
        `make_room` ages what the slot needs back)."""
        if n and self.slot_used:
            raise EngineError("the slot is in use; it cannot be lent")
        self.lent = min(n, self.layout.slot)
        try:
            yield
        finally:
            self.lent = 0

    def clear_slot(self) -> None:
        if self.slot_used:
            self.engine.seq_rm(WINDOW_SEQ, self.layout.sink, self.layout.recent_start)
            self.slot_used = 0
        self.slot_tokens = []

    # -- saving --------------------------------------------------------------------

    def snapshot(self) -> tuple[WindowHeader, bytes]:
        """What `restore` needs: the bookkeeping (copied) and llama.cpp's state of sequence 0."""
        if self._shift_pending:
            self._apply_shift()
        header = WindowHeader(
            layout=self.layout.to_dict(),
            sink_tokens=list(self.sink_tokens),
            recent={k: list(v) for k, v in self.recent.to_dict().items()},
            archived=self.archived,
            dropped=self.dropped,
            previous_token=self.previous_token,
            slot_used=self.slot_used,
            sketches=base64.b64encode(self.sketches.tobytes()).decode(),
        )
        return header, self.engine.state_get(0)

    def _apply_shift(self) -> None:
        """llama.cpp turns shifted keys at its next decode, and a saved state must hold them
        turned: one token decoded past the end, then removed."""
        pos = self.next_pos
        self.engine.decode([(self.recent.tokens or self.sink_tokens)[-1]], pos, seq=WINDOW_SEQ,
                           logits_last=False)
        self.engine.seq_rm(WINDOW_SEQ, pos, -1)
        self._shift_pending = False

    def restore(self, header: WindowHeader, state: bytes) -> None:
        if Layout(**header.layout) != self.layout:
            raise EngineError("saved window has another layout")
        self.engine.clear()
        self.engine.state_set(state, 0)
        self.sink_tokens = list(header.sink_tokens)
        r = header.recent
        self.recent = Recent(list(r["tokens"]), list(r["roles"]), list(r["sources"]),
                             list(r["segments"]))
        self.archived = header.archived
        self.dropped = header.dropped
        self.previous_token = header.previous_token
        self.slot_used = header.slot_used
        self.slot_tokens = None if self.slot_used else []  # the checkpoint holds its cells only
        raw = base64.b64decode(header.sketches)
        self.sketches = np.frombuffer(raw, np.uint8).reshape(-1, SKETCH_BYTES).copy()
        # (the lowest position is not checked: sliding-window layers drop the sink's cells)
        hi = self.engine.seq_pos_range(0)[1]
        want = self.next_pos - 1 if len(self.recent) else self.layout.sink + self.slot_used - 1
        if hi != want:
            raise EngineError(f"saved window ends at position {hi}, its record says {want}")

