"""A session's metadata and its window's bookkeeping as types: validated, versioned, upgraded.

`session.json` and `window.bin`'s header are JSON that a person, an older ikv or a crash may
have left in any shape; everything that reads them goes through `SessionMeta.from_dict` and
`WindowHeader.from_dict`, which check every field's type and bring older formats up to date
through the named steps in `UPGRADES`. A format newer than this ikv is refused, not guessed at.
No I/O here: `checkpoint` reads and writes the files.

session.json formats:
    1  no checksum, no copy of the window; `kv`, `system` and the counts may be absent
    2  a SHA-256 over the rest, and `window`: the window's bookkeeping without the KV state
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from functools import cache
from typing import Any

from ikv_local.errors import IkvError

FORMAT = 2


class MetadataError(IkvError):
    """A field is missing or of the wrong type (the caller says which file)."""

    exit_code = 7


class NewerFormat(IkvError):
    """Written by a newer ikv: reading it here could lose what that version added."""

    exit_code = 7


@dataclass
class ModelRef:
    path: str
    fingerprint: dict[str, Any]  # fingerprint.model_fingerprint: sha, arch, name, ...


@dataclass
class KvTypes:
    type_k: str = "f16"
    type_v: str = "f16"


@dataclass
class Document:
    path: str
    bytes: int = 0
    tokens: int = 0
    complete: bool = False  # False: the ingest was interrupted part-way
    added: str = ""
    pruned_all: bool = False  # every token of it was pruned from the archive


_SCALARS = (int, float, str, bool, type(None))


def plain(value: Any) -> Any:
    """`dataclasses.asdict` without its deep copy of every element: a checkpoint's token lists
    hold four entries per token of the window, and asdict copied each one at every turn."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(isinstance(v, _SCALARS) for v in value):
            return type(value)(value)
        return type(value)(plain(v) for v in value)
    return value


@dataclass
class WindowHeader:
    """What `Window.restore` needs besides llama.cpp's state, plus the session's counts.

    session.json keeps a copy without `sketches` (taken again on decode), `session` and
    `sources` (which are copies of other files, kept in window.bin only).
    """

    layout: dict[str, int]
    sink_tokens: list[int]
    recent: dict[str, list[int]]  # tokens, roles, sources, segments: one entry per token
    archived: int
    dropped: int
    previous_token: int | None
    slot_used: int
    sketches: str = ""  # base64 of the window's key sketches
    turns: int | None = None  # None: a checkpoint from before the turn log was counted
    turns_pruned: int = 0
    pruned: int = 0  # records pruned from the archive's front, ever
    system: str | None = None  # None: from before the checkpoint kept it (session.json has it)
    session: dict[str, Any] | None = None  # SessionMeta.copy(): restores a lost session.json
    sources: list[str] | None = None  # the archive's source names at this checkpoint

    @property
    def committed(self) -> int:
        """Records the checkpoint committed to the archive, pruned ones included."""
        return self.archived + self.pruned

    @property
    def tokens(self) -> int:
        return self.archived + self.dropped + len(self.recent["tokens"])

    def copy(self) -> WindowHeader:
        """As session.json keeps it."""
        return replace(self, sketches="", session=None, sources=None)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Any) -> WindowHeader:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "heat"}  # weighed at 0, no longer kept
        header = build(cls, data, "window")
        lengths = {k: len(header.recent.get(k, ())) for k in ("tokens", "roles", "sources", "segments")}
        if len(set(lengths.values())) != 1 or set(header.recent) != set(lengths):
            raise MetadataError(f"window.recent is malformed: {lengths}")
        return header


@dataclass
class SessionMeta:
    name: str
    model: ModelRef
    n_ctx: int
    layout: dict[str, int]
    documents: list[Document]
    kv: KvTypes = field(default_factory=KvTypes)
    created: str = ""
    updated: str = ""
    system: str = ""
    tokens: int = 0
    archived_tokens: int = 0
    turns: int = 0
    turns_pruned: int = 0
    window: WindowHeader | None = None  # format 2 on: a copy of the checkpoint's bookkeeping

    def to_dict(self) -> dict[str, Any]:
        """As written, at this ikv's format (the checksum is added by `checkpoint`)."""
        out = {"format": FORMAT, **plain(self)}
        if self.window is None:
            del out["window"]
        return out

    def copy(self) -> dict[str, Any]:
        """As window.bin keeps it: without its own copy of the window."""
        out = self.to_dict()
        out.pop("window", None)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> SessionMeta:
        if not isinstance(data, dict):
            raise MetadataError("not a JSON object")
        data = upgrade({k: v for k, v in data.items() if k != "sha256"})
        data.pop("format")
        return build(cls, data, "")


def _from_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 wrote no checksum and no window copy; early sessions also lacked `kv`,
    `system`, `turns`, `turns_pruned` (the dataclass defaults stand for them)."""
    return {**data, "format": 2}


Upgrade = Callable[[dict[str, Any]], dict[str, Any]]
UPGRADES: dict[int, Upgrade] = {1: _from_1}  # the step from format 1 to 2


def upgrade(data: dict[str, Any], current: int = FORMAT,
            steps: dict[int, Upgrade] = UPGRADES, what: str = "") -> dict[str, Any]:
    """The fields at format `current`, through each named step from the data's own format
    (its "format" key; none is format 1). A newer format is refused, not guessed at."""
    version = data.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MetadataError(f"format {version!r} is not a format")
    if version > current:
        raise NewerFormat(f"written by a newer ikv ({what}format {version}; this one reads up "
                          f"to {current}); upgrade ikv to open it")
    while version < current:
        data = steps[version](data)
        version = data["format"]
    return data


# -- checking -------------------------------------------------------------------------


def build(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass `cls` from JSON data, every field's type checked."""
    if not isinstance(data, dict):
        raise MetadataError(f"{where or cls.__name__} is not a JSON object")
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    extra = sorted(set(data) - known)
    if extra:
        raise MetadataError(f"unknown field {_at(where, extra[0])!r}")
    values = {}
    for f in fields(cls):
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name], _at(where, f.name))
        elif f.default is MISSING and f.default_factory is MISSING:
            raise MetadataError(f"missing field {_at(where, f.name)!r}")
    return cls(**values)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _at(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, where)
    if hint is Any:
        return value
    if hasattr(hint, "from_dict"):  # a type with its own checks (WindowHeader)
        return hint.from_dict(value)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise MetadataError(f"{where!r} is not a list")
        return [_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MetadataError(f"{where!r} is not an object")
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    ok = (isinstance(value, int) and not isinstance(value, bool) if hint is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float
          else isinstance(value, hint))
    if not ok:
        raise MetadataError(f"{where!r} is {type(value).__name__}, not {hint.__name__}")
    return value
