"""Fault injection at every write, the way SQLite tests itself: each write call of an
operation fails once, in turn (ENOSPC, EIO), or the process dies there (before the write, or
half-way through it); then the session must verify and hold exactly what was committed.

Used by tests/test_faults.py (a subset) and scripts/faults.py (the whole sweep, a receipt).
The hook is `IKV_FAULT` in ikv_local/files.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ikv_local.haystack import build
from ikv_local.paths import using_home
from ikv_local.record import RECORD_SIZE, header_size

KINDS = ("enospc", "eio", "kill", "torn")
CLI = [sys.executable, "-c", "from ikv_local.cli import main; main()"]
NAME = "m"


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[str, ...]
    stdin: str | None = None
    session: str = NAME  # the session the operation writes
    renamed_to: str | None = None
    damaged: bool = False  # window.bin deleted and turn 1's line flipped before it runs


def ops(docs: Path) -> dict[str, Op]:
    return {op.name: op for op in (
        Op("ingest-new", ("ingest", str(docs / "a.txt"), "--session", "new", "-c", "512"),
           session="new"),
        Op("ingest", ("ingest", str(docs / "b.txt"), "--session", NAME)),
        Op("chat-turn", ("chat", "--session", NAME, "-n", "8", "--temp", "0"), stdin="Say hi.\n"),
        Op("undo", ("chat", "--session", NAME), stdin="/undo 1\n"),
        Op("retry", ("chat", "--session", NAME, "-n", "8", "--temp", "0"), stdin="/retry\n"),
        Op("fork", ("sessions", "fork", NAME, "f", "--at-turn", "2"), session="f"),
        Op("prune", ("sessions", "prune", NAME, "--keep-last", "1", "--yes")),
        Op("rename", ("sessions", "rename", NAME, "m2"), renamed_to="m2"),
        Op("reindex", ("sessions", "reindex", NAME)),
        Op("repair", ("sessions", "repair", NAME)),
        Op("repair-damaged", ("sessions", "repair", NAME), damaged=True),
    )}


def run(args: tuple[str, ...], home: Path, stdin: str | None = None,
        fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ikv *args` in `home`: in this process, or in a forked child where the fault kills it."""
    from forked import run as run_forked
    from inprocess import run as run_here

    kills = (fault or "").startswith(("kill", "torn"))
    env = {"IKV_HOME": str(home), "IKV_FAULT": fault or ""}
    return subprocess.CompletedProcess(args, *(run_forked if kills else run_here)(args, env, stdin or ""))


def make_template(root: Path) -> tuple[Path, Path]:
    """A home with session NAME (a rolled window, three chat turns around two documents)."""
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(build(40, [], [], seed=1).text)
    (docs / "b.txt").write_text(build(20, [], [], seed=2).text)
    home = root / "template"
    for args, stdin in ((("ingest", str(docs / "a.txt"), "--session", NAME, "-c", "512"), None),
                        (("chat", "--session", NAME, "-n", "8", "--temp", "0"), "Say hello.\n"),
                        (("ingest", str(docs / "b.txt"), "--session", NAME), None),
                        (("chat", "--session", NAME, "-n", "8", "--temp", "0"), "Say bye.\nSay thanks.\n")):
        done = run(args, home, stdin)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
    return home, docs


def write_sites(op: Op, template: Path, scratch: Path) -> list[str]:
    """The operation's write calls, in order ("N site file"), counted on a copy."""
    home = _copy(template, scratch / "count")
    if op.damaged:
        _damage(home / "sessions" / op.session)
    log = scratch / "count.log"
    log.unlink(missing_ok=True)
    done = run(op.args, home, op.stdin, f"count:{log}")
    if done.returncode != 0:
        raise RuntimeError(f"{op.name}: {done.stderr}")
    return log.read_text().splitlines() if log.exists() else []


def _damage(folder: Path) -> None:
    (folder / "window.bin").unlink()
    log = folder / "turns.jsonl"
    data = bytearray(log.read_bytes())
    data[40] ^= 1
    log.write_bytes(bytes(data))


def _copy(template: Path, home: Path) -> Path:
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(template, home, symlinks=True)
    return home


@dataclass
class Snapshot:
    """What a session had committed: its records and turn lines, as bytes."""

    records: bytes
    turns: bytes

    @classmethod
    def of(cls, folder: Path) -> Snapshot:
        from ikv_local.checkpoint import read_window

        header, _ = read_window(folder)  # type: ignore[misc]
        path = folder / "archive" / "records.ikv"
        data = path.read_bytes() if path.exists() else b""
        head = header_size(data[:64]) if data else 0
        body = data[head : head + header.archived * RECORD_SIZE]
        log = folder / "turns.jsonl"
        lines = log.read_bytes().splitlines(keepends=True) if log.exists() else []
        n = (header.turns or 0) - header.turns_pruned
        return cls(body, b"".join(lines[:n]))


@dataclass
class Trial:
    op: str
    call: int
    site: str
    kind: str
    ok: bool
    why: str = ""


@dataclass
class Sweep:
    trials: list[Trial] = field(default_factory=list)

    @property
    def losses(self) -> list[Trial]:
        return [t for t in self.trials if not t.ok]


def trial(op: Op, call: int, site: str, kind: str, template: Path, scratch: Path) -> Trial:
    """Run `op` with the fault at write call `call`; then verify what the session holds."""
    from ikv_local.paths import data_dir  # noqa: F401  (IKV_HOME is read per call)

    home = _copy(template, scratch / "trial")
    if op.damaged:
        _damage(home / "sessions" / op.session)
    before_folder = template / "sessions" / op.session
    before = Snapshot.of(before_folder) if before_folder.exists() else None
    done = run(op.args, home, op.stdin, f"{kind}:{call}")
    out = Trial(op.name, call, site, kind, True)

    def fail(why: str) -> Trial:
        out.ok, out.why = False, why
        return out

    if kind in ("enospc", "eio"):
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ikv: error: ")]
        if done.returncode <= 0 or "Traceback" in done.stderr or len(errors) != 1:
            return fail(f"rc {done.returncode}: {done.stderr.strip()[-300:]}")
    elif done.returncode != -9:
        return fail(f"rc {done.returncode} (expected a kill): {done.stderr.strip()[-300:]}")
    stray = [p.name for p in home.rglob(".*.tmp")]
    if stray and kind in ("enospc", "eio"):
        return fail(f"temporary files left: {stray}")
    name = op.session
    if op.renamed_to and (home / "sessions" / op.renamed_to / "session.json").exists():
        name = op.renamed_to
    folder = home / "sessions" / name
    if before is None and not (folder / "session.json").exists():  # a new session: gone, or sound
        return out
    if op.damaged:  # repair stopped part-way: the session is no worse, and repair finishes
        again = run(op.args, home)
        if again.returncode != 0:
            return fail(f"repair again: {again.stderr.strip()[-300:]}")
    with using_home(home):
        from ikv_local.repair import check

        try:
            report = check(name)
        except Exception as exc:  # any failure to verify is a finding
            return fail(f"check: {exc}")
        if not report.sound:
            return fail("check: " + "; ".join(f.detail for f in report.findings if not f.ok))
        from ikv_local.session import OpenOptions, Session

        try:
            with Session(name, OpenOptions(writable=False)):
                pass
        except Exception as exc:
            return fail(f"open: {exc}")
    if op.name == "fork":  # the original was only read: it must be as sound as before
        with using_home(home):
            from ikv_local.repair import check

            if not check(NAME).sound:
                return fail(f"the original session {NAME!r} no longer verifies")
    if before is not None:
        now = Snapshot.of(folder)
        if op.name in ("undo", "retry"):  # the last turn taken back: what came before it stays
            lines = before.turns.splitlines(keepends=True)
            last = json.loads(lines[-1].split(b" ", 1)[1])
            kept = last["window_from"] * RECORD_SIZE  # (the template prunes nothing)
            if now.records[:kept] != before.records[:kept]:
                return fail("records before the taken-back turn changed")
            if not now.turns.startswith(b"".join(lines[:-1])):
                return fail("turns before the taken-back turn changed")
            return out
        if op.name != "prune" and not now.records.startswith(before.records):
            return fail("committed records changed")
        if op.name != "prune" and not op.damaged and not now.turns.startswith(before.turns):
            return fail("committed turns changed")
    return out


def sweep(names: list[str], kinds: tuple[str, ...] = KINDS, every: int = 1,
          log: Callable[[str], None] = lambda _: None,
          made: tuple[Path, Path] | None = None) -> tuple[Sweep, dict[str, int]]:
    """Every `every`-th write call of each named operation, with each fault kind.

    `made` is a template and its documents from `make_template`, shared by several sweeps
    (it is only ever copied); without it, one is made for this sweep.
    """
    result, sites = Sweep(), {}
    with tempfile.TemporaryDirectory(prefix="ikv-faults-") as tmp:
        root = Path(tmp)
        template, docs = made or make_template(root)
        table = ops(docs)
        for name in names:
            op = table[name]
            calls = write_sites(op, template, root)
            sites[name] = len(calls)
            for line in calls[::every]:
                number, site = line.split(" ", 1)
                for kind in kinds:
                    t = trial(op, int(number), site, kind, template, root)
                    result.trials.append(t)
                    log(f"{name} #{number} {site} {kind}: {'ok' if t.ok else 'LOSS ' + t.why}")
    return result, sites
