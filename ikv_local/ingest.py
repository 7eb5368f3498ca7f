"""Ingest: stream text files through the window into a session's archive.

Files are read in pieces and decoded as strict UTF-8, so a 100 MB book never sits in memory
whole; each piece ends at a whitespace so no word is split between two tokenizer calls, and a
run of text with no whitespace at all (a 2 MB line of base64) is cut between two characters
instead, so it too is read piece by piece, with progress. Every file is checked before the
first is read; a checkpoint follows each file, and one every CHECKPOINT_SECONDS in between,
so a stop loses at most that much reading.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ikv_local import interrupts
from ikv_local.errors import IkvError
from ikv_local.filing import Origin
from ikv_local.metadata import Document
from ikv_local.record import Role
from ikv_local.session import Session

READ_BYTES = 1 << 16
SNIFF_BYTES = 8192
CHECKPOINT_SECONDS = 60.0
PROGRESS_TOKENS = 512
DOCUMENT_GAP = "\n\n"


class InputError(IkvError):
    exit_code = 8


@dataclass
class Progress:
    file: str
    bytes_done: int
    bytes_total: int
    tokens: int
    archived: int
    seconds: float


@dataclass(frozen=True)
class IngestResult:
    session: str
    tokens: int  # tokens read by this ingest
    archived_tokens: int  # in the session's archive, all told
    window_tokens: int  # cells of the hot window
    seconds: float
    archive_bytes: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def check_text_file(path: Path) -> int:
    """Size of a readable, non-empty file that does not look binary."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if b"\x00" in head:
        raise InputError(f"{path}: looks binary (NUL bytes); ikv ingests UTF-8 text")
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=len(head) == size)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    return size


def text_pieces(path: Path, read_bytes: int = READ_BYTES) -> Iterator[tuple[str, int]]:
    """(text, bytes read so far); pieces end after whitespace, the last one at end of file.

    A read with no whitespace at all ends its piece where it ended: between two characters
    (never inside one), at the cost of the tokenizer seeing one word in two.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    carry = ""
    done = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(read_bytes)
            try:
                text = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: not UTF-8 text (bad byte near offset {done + exc.start})"
                ) from None
            done += len(raw)
            if not raw:
                if text:
                    yield text, done
                return
            cut = max(text.rfind(" "), text.rfind("\n"))
            if cut <= 0 and len(text) < read_bytes // 4:  # (a character takes 1 to 4 bytes)
                carry = text
                continue
            if cut <= 0:  # no whitespace to cut at: cut between two characters
                cut = len(text)
            carry = text[cut:]  # the tokenizer joins a leading space to the next word
            yield text[:cut], done


@dataclass
class _Checkpoints:
    """When the last checkpoint was written, and how many tokens it holds."""

    kept: int
    last: float

    def save(self, session: Session) -> None:
        with interrupts.held():  # a stop waits for the checkpoint, then knows its size
            session.save()
            self.kept, self.last = session.window.stream_end, time.perf_counter()


def ingest(session: Session, paths: list[Path],
           on_progress: Callable[[Progress], None] | None = None) -> IngestResult:
    """Read `paths` into the session; a stop (Ctrl-C, SIGTERM) leaves it as of the last
    checkpoint and says how many tokens that holds (`interrupts.Stopped.kept`)."""
    sizes = [check_text_file(p) for p in paths]
    saved = _Checkpoints(session.window.stream_end, time.perf_counter())
    try:
        return _read(session, paths, sizes, saved, on_progress)
    except KeyboardInterrupt as exc:
        interrupts.note_kept(exc, saved.kept)
        raise


def _read(session: Session, paths: list[Path], sizes: list[int], saved: _Checkpoints,
          on_progress: Callable[[Progress], None] | None) -> IngestResult:
    engine, window = session.engine, session.window
    assert engine is not None
    t0 = time.perf_counter()
    tokens = 0
    for path, size in zip(paths, sizes):
        source = session.archive.source_id(str(path.resolve()))
        segment = len(session.meta.documents)
        origin = Origin(Role.DOCUMENT, source, segment)
        doc = Document(str(path.resolve()), size,
                       added=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        session.meta.documents.append(doc)  # saved with each checkpoint
        doc_tokens = 0
        if window.stream_end:
            gap = engine.tokenize(DOCUMENT_GAP)
            window.append(gap, origin)
            doc_tokens += len(gap)
        before = 0
        step = min(PROGRESS_TOKENS, window.layout.block)  # the window decodes a block at a time
        for text, done in text_pieces(path):
            piece = engine.tokenize(text)
            for at in range(0, len(piece), step):  # a bar that moves, a stop or a checkpoint
                part = piece[at : at + step]
                window.append(part, origin)
                doc_tokens += len(part)
                if on_progress:
                    share = (at + len(part)) / len(piece)
                    on_progress(Progress(str(path), before + round((done - before) * share), size,
                                         tokens + doc_tokens, window.archived,
                                         time.perf_counter() - t0))
                if time.perf_counter() - saved.last > CHECKPOINT_SECONDS:  # within a piece too
                    doc.tokens = doc_tokens
                    saved.save(session)
            before = done
        tokens += doc_tokens
        doc.tokens, doc.complete = doc_tokens, True
        session.index.refresh()
        saved.save(session)
    return IngestResult(session.name, tokens, window.archived, window.cells,
                        round(time.perf_counter() - t0, 3), session.archive_bytes)
