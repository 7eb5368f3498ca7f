"""`ikv sessions check` and `ikv sessions repair`: say what is damaged, keep all that verifies.

Check reads every file of a session without a model. Repair keeps every record and turn
that passes its checksum, rebuilds what can be rebuilt (session.json from the checkpoint's
copy, the window from the token ids session.json keeps, sources from the checkpoint or the
records, the index from the records) and moves what fails into `damaged/<time>/` instead of
deleting it. Its report names exactly what was lost.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ikv_local.archive import RECORDS_FILE, SOURCES_FILE, Archive
from ikv_local.checkpoint import (
    META_FILE,
    WINDOW_FILE,
    Damaged,
    SessionError,
    file_format,
    read_meta_file,
    read_window,
    write_meta_file,
)
from ikv_local.files import private_dir, unused, write_atomic
from ikv_local.history import LOG_NAME, History
from ikv_local.metadata import MetadataError, NewerFormat, SessionMeta, WindowHeader
from ikv_local.record import ArchiveError, Role
from ikv_local.session import OpenOptions, Session, check_name, hold_lock, holds_data, sessions_dir


@dataclass
class Finding:
    part: str  # session.json, window.bin, archive, sources, turns, index
    ok: bool
    detail: str


@dataclass
class CheckReport:
    session: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, part: str, problem: str | None, fine: str = "ok") -> None:
        self.findings.append(Finding(part, problem is None, problem or fine))

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "sound": self.sound,
                "findings": [asdict(f) for f in self.findings]}


def _folder(name: str) -> Path:
    folder = sessions_dir() / check_name(name)
    if not folder.is_dir() or not ((folder / META_FILE).exists() or holds_data(folder)):
        raise SessionError(f"no session named {name!r}")
    return folder


def check(name: str) -> CheckReport:
    """Every file of a session, verified; nothing is changed."""
    folder = _folder(name)
    report = CheckReport(name)
    meta: SessionMeta | None = None
    try:
        meta = read_meta_file(folder / META_FILE)
        version = file_format(folder / META_FILE)
        report.add(META_FILE, None, f"format {version}, checksum "
                   + ("verified" if version >= 2 else "absent (format 1)"))
    except FileNotFoundError:
        report.add(META_FILE, "missing")
    except (Damaged, NewerFormat) as exc:
        report.add(META_FILE, str(exc))
    saved: WindowHeader | None = None
    try:
        checkpoint = read_window(folder)
        if checkpoint is None:
            report.add(WINDOW_FILE, "missing")
        else:
            saved = checkpoint[0]
            report.add(WINDOW_FILE, None, f"checksum verified; {len(saved.recent['tokens']):,} "
                       "recent tokens")
    except (Damaged, NewerFormat) as exc:
        report.add(WINDOW_FILE, str(exc))
    basis = saved or (meta.window if meta else None)
    if meta is not None and saved is not None:
        behind = any(getattr(meta, k) != v for k, v in _counts(saved).items())
        report.add("agreement", _disagreement(meta, saved),
                   "session.json is a checkpoint behind window.bin (a save was interrupted); "
                   "the next open brings it up to date" if behind
                   else "session.json's counts match the checkpoint")
    _check_archive(folder, basis, report)
    _check_turns(folder, basis, report)
    return report


def _counts(window: WindowHeader) -> dict[str, int]:
    """What session.json's counts must be for a checkpoint with this bookkeeping."""
    return {"archived_tokens": window.archived, "turns": window.turns or 0,
            "tokens": window.tokens}


def _disagreement(meta: SessionMeta, saved: WindowHeader) -> str | None:
    """session.json must match its own copy of the window, and be the checkpoint's or the one
    before it (a save interrupted between its two files)."""
    if meta.window is not None:
        off = [f"{k} {getattr(meta, k)!r} (its window copy: {v})"
               for k, v in _counts(meta.window).items() if getattr(meta, k) != v]
        if off:
            return "session.json disagrees with itself: " + ", ".join(off)
    want = _counts(saved)
    ahead = [k for k in ("tokens", "turns")  # only these grow always (a prune cuts archived_tokens)
             if getattr(meta, k) > want[k]]
    if ahead:
        return ("session.json is ahead of the checkpoint: "
                + ", ".join(f"{k} {getattr(meta, k)} > {want[k]}" for k in ahead))
    return None


def _committed(basis: WindowHeader | None) -> int | None:
    return basis.committed if basis else None


def _archive(folder: Path, basis: WindowHeader | None) -> Archive:
    """The archive read-only, as the checkpoint committed it (what was found goes in reports)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Archive(folder / "archive", writable=False, committed_total=_committed(basis))


def _check_archive(folder: Path, basis: WindowHeader | None, report: CheckReport) -> None:
    if not (folder / "archive" / RECORDS_FILE).exists():
        report.add("archive", "missing" if _committed(basis) else None, "empty")
        return
    try:
        archive = _archive(folder, basis)
    except ArchiveError as exc:
        report.add("archive", str(exc))
        return
    r = archive.report
    problems = []
    if r.missing:
        problems.append(f"{r.missing:,} records the checkpoint counts are gone from the file")
    if r.bad_inside:
        problems.append(f"{len(r.bad_inside):,} records fail their checksums "
                        f"(records {_ranges(r.bad_inside)})")
    tail = (f"; {r.dropped_tail:,} records and {r.torn_bytes} bytes past the checkpoint "
            "(an interrupted write, cut on the next open)") if r.dropped_tail or r.torn_bytes else ""
    report.add("archive", "; ".join(problems) or None, f"{len(archive):,} records verified{tail}")
    try:
        names = archive.sources()
    except ArchiveError as exc:
        report.add("sources", str(exc))
        return
    kept = basis.sources if basis else None
    used = int(np.max(archive.records()["source"])) + 1 if len(archive) else 0
    if kept is not None and names[: len(kept)] != kept:
        report.add("sources", f"{SOURCES_FILE} disagrees with the checkpoint's copy")
    elif used > len(names):
        report.add("sources", f"records name {used} sources, {SOURCES_FILE} has {len(names)}")
    else:
        report.add("sources", None, f"{len(names)} sources")


def _check_turns(folder: Path, basis: WindowHeader | None, report: CheckReport) -> None:
    history = History(folder)
    want = basis.turns if basis and basis.turns is not None else history.last
    history.keep(min(want, history.last), writable=False)  # lines past it are an unsaved tail
    problems = []
    if history.damaged:
        problems.append(f"turn(s) {_ranges(history.damaged)} fail their checksums")
    if history.last < want:
        problems.append(f"the log ends at turn {history.last}, the checkpoint expects {want}")
    report.add("turns", "; ".join(problems) or None, f"{len(history.turns)} turns verified")


def _ranges(ns: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(ns):
        if start is None:
            start = n
        if i + 1 == len(ns) or ns[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)


@dataclass
class RepairReport:
    session: str
    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    set_aside: str | None = None  # the damaged/ folder, when anything went there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair(name: str, model: str | None = None, n_threads: int | None = None) -> RepairReport:
    """Make a damaged session open again, keeping every part that verifies."""
    folder = _folder(name)
    report = RepairReport(name)
    # a folder of its own: a second repair within the same second would replace the first's files
    aside = unused(folder / "damaged" / time.strftime("%Y%m%d-%H%M%S"))
    fd = hold_lock(folder, name, exclusive=True)
    try:
        _repair_files(folder, name, aside, report)
    finally:
        if fd is not None:
            os.close(fd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report says what was found
        with Session(name, OpenOptions(model=model, n_threads=n_threads, rebuild=True)) as s:
            missing = s.archive.report.missing
            if missing:
                report.lost.append(f"{missing:,} archived tokens the checkpoint counted were gone "
                                   "from the archive file")
            if not (folder / WINDOW_FILE).exists():
                report.actions.append(f"decoded the window again from the {len(s.window.recent):,} "
                                      "recent token ids session.json keeps (the recall slot "
                                      "starts empty)")
            s.index.rebuild()
            report.actions.append(f"rebuilt the index from {len(s.archive):,} records")
            s.save()
    if aside.exists():
        report.set_aside = str(aside.relative_to(folder))
    return report


def _set_aside(path: Path, aside: Path, report: RepairReport, why: str) -> None:
    private_dir(aside)
    shutil.move(str(path), str(aside / path.name))
    report.actions.append(f"moved {path.name} ({why}) to damaged/")


def _repair_files(folder: Path, name: str, aside: Path, report: RepairReport) -> None:
    meta_path = folder / META_FILE
    try:
        checkpoint = read_window(folder)
    except Damaged as exc:
        checkpoint = None
        _set_aside(folder / WINDOW_FILE, aside, report, str(exc))
    saved = checkpoint[0] if checkpoint else None
    try:
        meta = read_meta_file(meta_path)
    except (FileNotFoundError, Damaged) as exc:
        if saved is None or saved.session is None:
            raise SessionError(f"session {name!r}: {META_FILE} is lost and the window checkpoint "
                               "holds no copy of it; nothing to rebuild it from") from None
        try:
            meta = SessionMeta.from_dict({**saved.session, "name": name})
        except MetadataError as bad:
            raise SessionError(f"session {name!r}: {META_FILE} is lost and the window "
                               f"checkpoint's copy of it is unusable ({bad})") from None
        if meta_path.exists():
            _set_aside(meta_path, aside, report, str(exc))
        meta.window = saved.copy()
        report.actions.append(f"restored {META_FILE} from the window checkpoint's copy")
        write_meta_file(meta_path, meta)
    basis = saved or meta.window
    if basis is None and not (folder / WINDOW_FILE).exists():
        report.lost.append("the window's recent tokens: no checkpoint and no copy of it (a session "
                           "from before format 2); the window restarts after the archive")
    _repair_sources(folder, meta, basis, aside, report)
    _repair_turns(folder, aside, report)
    _repair_records(folder, basis, aside, report)


def _repair_sources(folder: Path, meta: SessionMeta, basis: WindowHeader | None,
                    aside: Path, report: RepairReport) -> None:
    if not (folder / "archive" / RECORDS_FILE).exists():
        return
    archive = _archive(folder, basis)
    kept = basis.sources if basis else None
    path = folder / "archive" / SOURCES_FILE
    try:
        names = archive.sources()
        if kept is None or names[: len(kept)] == kept:
            return
        why = "disagreed with the checkpoint"
    except ArchiveError as exc:
        why = str(exc)
    if path.exists():
        _set_aside(path, aside, report, why)
    if kept is None:  # no copy: each record says whether it was a document's or the chat's
        recs = archive.records()
        docs = [d.path for d in meta.documents]
        found: dict[int, str] = {}
        for sid, role, seg in zip(recs["source"], recs["role"], recs["segment"]):
            if int(sid) not in found:
                found[int(sid)] = (docs[int(seg)] if role == Role.DOCUMENT and int(seg) < len(docs)
                                   else "chat" if role != Role.DOCUMENT else f"source {sid}")
        kept = [found.get(i, f"source {i}") for i in range(max(found, default=-1) + 1)]
    archive.write_sources(list(kept))
    report.actions.append(f"rebuilt {SOURCES_FILE} ({len(kept)} sources)")


def _repair_turns(folder: Path, aside: Path, report: RepairReport) -> None:
    history = History(folder)
    bad = history.damaged
    if not bad:
        return
    private_dir(aside)
    lines = history.set_aside()
    write_atomic(aside / LOG_NAME, b"".join(line.raw for line in lines))
    report.actions.append(f"moved {len(lines)} damaged line(s) of {LOG_NAME} to damaged/")
    report.lost.append(f"turn(s) {_ranges(bad)} of the log (their tokens stay in the archive "
                       "and window)")


def _repair_records(folder: Path, basis: WindowHeader | None, aside: Path,
                    report: RepairReport) -> None:
    if not (folder / "archive" / RECORDS_FILE).exists():
        return
    archive = _archive(folder, basis)
    bad = archive.report.bad_inside
    if not bad:
        return
    private_dir(aside)
    recs = archive.records()
    write_atomic(aside / "records.bin", np.ascontiguousarray(recs[bad]).tobytes())
    write_atomic(aside / "records.json", json.dumps({"record_index": bad}).encode())
    report.actions.append(f"copied {len(bad):,} damaged record(s) to damaged/; they stay in place, "
                          "never recalled")
    report.lost.append(f"{len(bad):,} archived token(s) (records {_ranges(bad)}): their ids and "
                       "sketches fail their checksums, so they cannot be recalled")
