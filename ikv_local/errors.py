"""Errors a user can act on.

The CLI prints an `IkvError` as one line on stderr and exits with its `exit_code`;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class IkvError(Exception):
    """Base class: the message is the whole story, on one line."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ModelError(IkvError):
    """The model file cannot be used (missing, not a GGUF, truncated, unknown architecture)."""

    exit_code = 2


class ContextTooLarge(IkvError):
    """The requested context does not fit in memory."""

    exit_code = 3


class EngineError(IkvError):
    """llama.cpp refused an operation (decode, sequence edit, state copy)."""

    exit_code = 4


class NoRoom(EngineError):
    """A decode found no free cells in the KV cache (llama.cpp changed nothing)."""
