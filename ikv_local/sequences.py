"""The llama.cpp sequence ids ikv uses, in one place: each has one job in the shared cache."""

from __future__ import annotations

WINDOW_SEQ = 0  # the conversation: the hot window
SCRATCH_SEQ = 1  # tags cells for a moment so readout can serialise them
RECALL_SEQ = 2  # a copy of the sink with the question or the recall slot decoded after it
N_SEQ = 3  # what a session's context is made with
