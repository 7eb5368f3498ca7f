"""A screenshot of the real TUI in the middle of a conversation, as SVG (Textual's export).

    python scripts/tui_screenshot.py        # writes docs/tui.svg

A fresh session on the demo model (window 1,024): a fact, a few dozen turns of chatter
until the window has rolled, then a question; the memory view shows the recalled spans.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from long_chat import script

from ikv_local.chat import ChatSettings
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions
from tui.app import IkvApp

SYSTEM = ("A conversation between a user and an assistant. The assistant answers briefly and "
          "remembers everything the user said.")


async def shoot(out: Path, turns: int, seed: int) -> None:
    app = IkvApp("trip", OpenOptions(n_ctx=1024, system=SYSTEM),
                 ChatSettings(max_tokens=32, params=SamplingParams(seed=seed)))
    async with app.run_test(size=(150, 44)) as pilot:
        async def send(text: str) -> None:
            app.query_one("#input").value = text
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()

        await app.workers.wait_for_complete()
        await pilot.pause()
        await send("My flight number is KL1827.")
        chatter = [t for t in script(2 * turns, seed) if not t.startswith(("My", "I ", "The", "By"))]
        for text in chatter[:turns]:
            await send(text)
        await send("What is my flight number?")
        spans = app.query_one("#spans")
        spans.focus()
        await pilot.press("down")
        await pilot.pause()
        out.write_text(app.export_screenshot(title="ikv tui"))
        print(f"{out}: {app.state.tokens:,} tokens, {app.state.archived:,} archived, "
              f"{len(app.state.recalled)} spans recalled")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="docs/tui.svg")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ikv-tui-") as home:
        os.environ["IKV_HOME"] = home
        asyncio.run(shoot(Path(a.out).resolve(), a.turns, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
