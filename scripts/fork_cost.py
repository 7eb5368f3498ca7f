"""What going back costs: a fork's copy at 100k and 1M archived tokens, a fork at an earlier
turn, and /undo, on the demo model.

    python scripts/fork_cost.py            # writes receipts/fork_cost.json (about 3 minutes)

A real session is made first: 40 chat turns at the default window of 2,048 tokens (greedy,
16-token answers), so window.bin, the turn log and the index are what a user has. For the
copy at a given size its record file is then grown with copies of its own records to that
many records (the copy does not read them; only their bytes count). Timed, median of
`--runs`:
- `copy_session` (what `/fork` and `ikv sessions fork` do before any rewind), beside
  `shutil.copytree` of the same folder, the plain copy one would write instead;
- `ikv sessions fork --at-turn` at half the turns (the copy, a second engine, the window
  decoded again) and at the last turn (the copy alone), in-process;
- `/undo 1` (`Chat.undo`) of the 40th turn, which aged the window: the window decoded
  again and the checkpoint written; and of one more short turn that aged nothing: the
  window cut where that turn began and the checkpoint written (whether each turn aged the
  window is in the receipt).
Sharing the original's record file by hard links would cost nothing to make but cannot be
used: a rewind truncates the records, which would cut them under the other session too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from ikv_local import receipt  # noqa: E402
from ikv_local.haystack import build  # noqa: E402

TURNS = 40


def median_of(runs: int, fn, before=None) -> float:  # type: ignore[no-untyped-def]
    times = []
    for i in range(runs):
        if before:
            before(i)
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 4)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "receipts"))
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ikv-fork-cost-"))
    os.environ["IKV_HOME"] = str(home)
    from ikv_local.archive import RECORDS_FILE
    from ikv_local.branch import copy_session, fork
    from ikv_local.chat import Chat, ChatSettings
    from ikv_local.model_file import demo_model_path
    from ikv_local.record import RECORD_SIZE, header_size
    from ikv_local.sampling import SamplingParams
    from ikv_local.session import OpenOptions, Session, remove_session, sessions_dir

    model = demo_model_path()
    lines = build(80, [], [], seed=11).text.split(". ")
    settings = ChatSettings(max_tokens=16, params=SamplingParams.greedy())
    t0 = time.perf_counter()
    with Session("base", OpenOptions(model=str(model), create=True)) as s:
        chat = Chat(s, settings)
        for i in range(TURNS):
            chat.turn(". ".join(lines[2 * i : 2 * i + 2]) + ".")
        real = {"archived": s.window.archived, "tokens": s.window.stream_end,
                "n_ctx": s.window.layout.n_ctx}
    real["make_s"] = round(time.perf_counter() - t0, 1)
    base = sessions_dir() / "base"
    real["folder_bytes"] = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    print("session", real, flush=True)

    copies: dict[str, object] = {}
    for n in (int(x) for x in a.sizes.split(",")):
        grown = sessions_dir() / f"grown{n}"
        shutil.copytree(base, grown)
        path = grown / "archive" / RECORDS_FILE
        data = path.read_bytes()
        head = header_size(data[:64])
        body = data[head:]
        have = len(body) // RECORD_SIZE
        reps, rest = divmod(max(0, n - have), have)
        with open(path, "ab") as f:
            f.writelines(body for _ in range(reps))
            f.write(body[: rest * RECORD_SIZE])
        size = sum(p.stat().st_size for p in grown.rglob("*") if p.is_file())

        def drop(i: int, n: int = n) -> None:
            shutil.rmtree(sessions_dir() / f"c{n}-{i}", ignore_errors=True)

        ours = median_of(a.runs, lambda i, n=n, grown=grown: copy_session(grown, f"c{n}-{i}"))
        for i in range(a.runs):
            drop(i)
        plain = median_of(a.runs, lambda i, n=n, grown=grown: shutil.copytree(
            grown, sessions_dir() / f"c{n}-{i}"))
        for i in range(a.runs):
            drop(i)
        copies[str(n)] = {"folder_bytes": size, "copy_session_s": ours, "copytree_s": plain,
                          "mb_per_s": round(size / 2**20 / ours, 1)}
        print(n, copies[str(n)], flush=True)
        shutil.rmtree(grown)

    runs = max(3, a.runs // 2)
    at_half = median_of(runs, lambda i: fork("base", f"h{i}", TURNS // 2,
                                             OpenOptions(model=str(model))))
    at_last = median_of(runs, lambda i: fork("base", f"l{i}"))
    for i in range(runs):
        remove_session(f"h{i}")
        remove_session(f"l{i}")

    def fresh(i: int) -> None:
        shutil.rmtree(sessions_dir() / "u", ignore_errors=True)
        shutil.copytree(base, sessions_dir() / "u")

    sessions: list[Session] = []
    rolled: list[bool] = []

    def undo(i: int) -> None:
        Chat(sessions[-1], settings).undo(1)

    def opened(i: int) -> None:
        fresh(i)
        if sessions:
            sessions.pop().close()
        sessions.append(Session("u", OpenOptions(model=str(model))))

    def last_aged() -> bool:  # the window's recent tokens no longer begin where it began
        s = sessions[-1]
        return s.window.archived + s.window.dropped != s.history.turns[-1].window_from

    undo_s = median_of(runs, undo, before=lambda i: (opened(i), rolled.append(last_aged())))
    aged: list[bool] = []

    def opened_and_thanked(i: int) -> None:  # one more turn, taken back by the undo
        opened(i)
        Chat(sessions[-1], settings).turn("Thanks.")
        aged.append(last_aged())

    undo_kept_s = median_of(runs, undo, before=opened_and_thanked)
    sessions.pop().close()
    shutil.rmtree(home)
    results = {"session": real, "copy": copies, "runs": a.runs,
               "fork_at_half_turns_s": at_half, "fork_at_last_turn_s": at_last,
               "undo_1_s": undo_s, "undo_1_turn_aged_the_window": all(rolled),
               "undo_1_nothing_aged_s": undo_kept_s, "that_turn_aged_the_window": any(aged),
               "turns": TURNS}
    print(results, flush=True)
    receipt.write("fork_cost", results, {"model_sha256": receipt.file_sha256(model)},
                  "python scripts/fork_cost.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
