"""A session written out for people or other tools, and its index rebuilt from the records.

`md` and `json` come from the turn log and session.json alone; `text` is every token the
session holds (archive, then window), which needs the model's vocabulary.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ikv_local.errors import IkvError
from ikv_local.files import FILE_MODE, write_atomic
from ikv_local.fingerprint import model_label
from ikv_local.history import History
from ikv_local.session import (
    OpenOptions,
    Session,
    committed_records,
    hold_lock,
    read_meta,
    sessions_dir,
)

FORMATS = ("md", "json", "text")


def export_session(name: str, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format is one of {', '.join(FORMATS)}")
    meta = read_meta(name)
    if fmt == "text":
        return stream_text(name)
    history = History(sessions_dir() / name)
    history.keep(min(meta.turns, history.last), writable=False)
    fp = meta.model.fingerprint
    if fmt == "json":
        return json.dumps({
            "session": name, "model": model_label(fp),
            "model_path": meta.model.path, "n_ctx": meta.n_ctx,
            "system": meta.system, "documents": [asdict(d) for d in meta.documents],
            "tokens": meta.tokens, "archived_tokens": meta.archived_tokens,
            "turns": [t.to_dict() for t in history.turns],
        }, ensure_ascii=False, indent=1) + "\n"
    lines = [f"# Session {name}", "",
             f"- model: {model_label(fp)} (`{meta.model.path}`)",
             f"- window: {meta.n_ctx:,} tokens; {meta.tokens:,} tokens in all, "
             f"{meta.archived_tokens:,} archived",
             f"- created {meta.created or '?'}, updated {meta.updated or '?'}"]
    for d in meta.documents:
        lines.append(f"- document `{d.path}`: {d.tokens:,} tokens")
    if meta.system:
        lines += ["", "## System prompt", "", meta.system]
    for t in history.turns:
        lines += ["", f"## Turn {t.n}", "", f"**You:** {t.user}", "", f"**ikv:** {t.answer.strip()}"]
        if t.recalled:
            lines += ["", "<details><summary>recalled</summary>", ""]
            for s in sorted(t.recalled, key=lambda s: -s["score"]):
                lines.append(f"- `{os.path.basename(s['source'])}` tokens {s['start']:,}–"
                             f"{s['end']:,} (score {s['score']:.3f}): "
                             + " ".join(str(s["text"]).split()))
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def stream_text(name: str) -> str:
    """Every token the session has read or said, in order, as text."""
    with Session(name, OpenOptions(writable=False)) as s:
        assert s.engine is not None
        tokens = [int(t) for t in s.archive.records()["token"][: s.window.archived]]
        return s.engine.detokenize(tokens + s.window.recent.tokens)


@dataclass(frozen=True)
class Reindexed:
    session: str
    records: int
    damaged: int
    lists: int  # 0: small enough to be scanned exactly
    seconds: float
    index_bytes: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def reindex(name: str) -> Reindexed:
    """Rebuild the search index of a session no process has open, from its records alone."""
    import warnings

    from ikv_local.archive import Archive
    from ikv_local.index import SketchIndex

    read_meta(name)
    folder = sessions_dir() / name
    fd = hold_lock(folder, name, exclusive=True)
    try:
        t0 = time.perf_counter()
        saved = committed_records(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the report below says what was found
            archive = Archive(folder / "archive", writable=False, committed_total=saved)
        index = SketchIndex(archive)
        index.rebuild()
        return Reindexed(name, len(archive), len(archive.report.bad_inside),
                         index.meta["nlist"], round(time.perf_counter() - t0, 3),
                         index.disk_bytes())
    finally:
        if fd is not None:
            os.close(fd)


def write_export(out: Path, text: str, force: bool = False) -> None:
    """Write an export: never over a file without `force`; an existing target keeps its mode."""
    if not out.parent.is_dir():
        raise IkvError(f"cannot write {out}: there is no folder {out.parent}")
    if out.exists() and not force:
        raise IkvError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise IkvError(f"{out} is a folder")
    mode = stat.S_IMODE(out.stat().st_mode) if out.exists() else FILE_MODE
    write_atomic(out, text.encode(), mode=mode)
