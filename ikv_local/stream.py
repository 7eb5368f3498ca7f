"""An answer's text as its tokens arrive: what may be shown now, and where it stops.

A token's piece may end inside a multi-byte character, and a stop string may arrive over
several pieces, so the text shown lags what was sampled: bytes wait for their character, and
an ending that could still grow into a stop string waits until it cannot. Nothing here knows
the model, so this is tested on bytes alone.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

BLANK_LINE = "\n\n"


class AnswerText:
    """Fed each sampled token's bytes; says what text is new to show, and when a stop string ended it.

    The answer is cut before the first stop string; the stop string itself is never shown.
    With `paragraph`, a blank line after some text ends it too: a base model, with no
    end-of-turn token, goes on from its answer to questions of its own after one.
    """

    def __init__(self, stops: Sequence[str], paragraph: bool = False) -> None:
        self.stops = tuple(stops)
        self.paragraph = paragraph
        self.text = ""  # the answer so far: cut at the stop string once one completed
        self.stopped = False  # a stop string completed; feed no more
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._longest = max((len(s) for s in self.stops), default=0)
        self._prefixes = {s[:i] for s in self.stops for i in range(1, len(s))}
        self._shown = 0

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; the text that can be shown now and was not before (may be "")."""
        assert not self.stopped, "fed after a stop string"
        before = len(self.text)
        self.text += self._utf8.decode(piece)
        # only the new tail can complete a stop string
        tail = max(0, before - max(self._longest, len(BLANK_LINE)))
        found = [self.text.find(s, tail) for s in self.stops]
        content = len(self.text) - len(self.text.lstrip())  # where the answer's text begins
        has_content = content < len(self.text)
        if self.paragraph and has_content:
            found.append(self.text.find(BLANK_LINE, max(tail, content)))
        cut = min((i for i in found if i >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            hold = 0
        else:  # hold back what could be the start of a stop string
            hold = max((len(p) for p in self._prefixes if self.text.endswith(p)), default=0)
            if self.paragraph and has_content and self.text.endswith(BLANK_LINE[0]):
                hold = max(hold, 1)
        return self._show(len(self.text) - hold)

    def finish(self) -> str:
        """The answer ended without a stop string: the rest, held-back text and any cut-off
        character (as U+FFFD) included. After a stop string there is nothing more."""
        if self.stopped:
            return ""
        self.text += self._utf8.decode(b"", final=True)
        return self._show(len(self.text))

    def _show(self, upto: int) -> str:
        if upto <= self._shown:
            return ""
        new = self.text[self._shown : upto]
        self._shown = upto
        return new


class FirstTextTrimmed:
    """A streamed answer's pieces with the whitespace before its first text dropped: the
    plain chat format leaves a space after "Assistant:" that nobody wants to see."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, chunk: str) -> str:
        if not self.started:
            chunk = chunk.lstrip()
            self.started = bool(chunk)
        return chunk
