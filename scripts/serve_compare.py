"""One scripted conversation through llama-cpp-python's server and through `ikv serve`.

    pip install fastapi pydantic-settings sse-starlette 'starlette-context>=0.3.6,<0.4'
    python scripts/serve_compare.py [GGUF] [-c 1024] [--keep 6]   # receipts/serve_compare.json

Both servers get the same model, window (`-c`) and threads, one after the other. The client
is what chat front ends do: it sends the conversation each time, keeping only its last
`--keep` messages. The conversation plants four facts in its first turns, talks about other
things for `--filler` turns (long enough to roll ikv's window several times), then asks
about each fact. Measured per server, in one run:
- facts answered: the answer names the fact's key word (and, for ikv, whether the fact was in
  what it recalled);
- time to first token of every request (streamed), and the median over the requests where
  ikv recalled nothing (the cost of ikv's bookkeeping alone), as a ratio to the baseline.
Default model: SmolLM2-135M-Instruct (a chat template, as servers are used), else the demo
model.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from ikv_local import receipt  # noqa: E402
from ikv_local.haystack import build  # noqa: E402

FACTS = [
    ("My sister's boat is called the Silver Heron.", "What is my sister's boat called?", "heron"),
    ("The code for the garden gate is 7316.", "What is the code for the garden gate?", "7316"),
    ("Our cat is named Biscuit.", "What is our cat named?", "biscuit"),
    ("I was born in the town of Harrowgate.", "In which town was I born?", "harrowgate"),
]


# llama_cpp.server as it ships, its weights loaded as ikv's engine loads them (no AMX buffers)
BASELINE = ("import runpy; from ikv_local.engine import baseline_loads_as_the_engine; "
            "baseline_loads_as_the_engine(); "
            "runpy.run_module('llama_cpp.server', run_name='__main__')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server stopped: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/models", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not come up")


def converse(url: str, script: list[str], keep: int, max_tokens: int) -> list[dict]:
    """Every request of the script, streamed: the answer, its time to first token, ikv's extra."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    history: list[dict] = []
    rows = []
    for line in script:
        history.append({"role": "user", "content": line})
        sent = history[-keep:] if history[-keep:][0]["role"] == "user" else history[-keep + 1:]
        t0 = time.perf_counter()
        first, parts, extra, error = None, [], None, None
        try:
            for ch in client.chat.completions.create(model="m", messages=sent, stream=True,
                                                     temperature=0, max_tokens=max_tokens,
                                                     seed=1):
                if ch.choices and ch.choices[0].delta.content:
                    first = first or time.perf_counter() - t0
                    parts.append(ch.choices[0].delta.content)
                extra = (ch.model_extra or {}).get("ikv") or extra
        except Exception as exc:  # a refused request is a result
            error = str(exc)[:200]
        answer = "".join(parts).strip()
        history.append({"role": "assistant", "content": answer})
        rows.append({"question": line, "answer": answer, "ttft_s": first, "error": error,
                     "recalled": [s["text"] for s in extra["recalled"]] if extra else None,
                     "seconds": round(time.perf_counter() - t0, 3)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("-c", "--ctx", type=int, default=1024)
    ap.add_argument("--keep", type=int, default=6)
    ap.add_argument("--filler", type=int, default=30)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", default=str(HERE / "receipts"))
    a = ap.parse_args()
    from ikv_local.model_file import packaged_models

    model = Path(a.model) if a.model else packaged_models()[-1]
    lines = build(a.filler * 3, [], [], seed=21).text.split(". ")
    filler = [". ".join(lines[3 * i : 3 * i + 3]) + "." for i in range(a.filler)]
    script = [f"Please remember this. {fact}" for fact, _, _ in FACTS] + filler \
        + [question for _, question, _ in FACTS]
    servers = {
        "llama_cpp.server": [sys.executable, "-c", BASELINE, "--model", str(model),
                             "--n_ctx", str(a.ctx), "--n_threads", str(a.threads)],
        "ikv serve": [sys.executable, "-c", "from ikv_local.cli import main; main()", "serve",
                      str(model), "-c", str(a.ctx), "-t", str(a.threads)],
    }
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ikv-serve-compare-") as tmp:
        env = {**os.environ, "IKV_HOME": tmp}
        for name, cmd in servers.items():
            port = free_port()
            log = Path(tmp) / f"{name}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=out, stderr=out,
                                        env=env)
            url = f"http://127.0.0.1:{port}/v1"
            try:
                wait_up(url, proc, log)
                rows = converse(url, script, a.keep, a.max_tokens)
            finally:
                proc.terminate()
                proc.wait(60)
            asked = rows[-len(FACTS):]
            answered = [key in r["answer"].lower() for r, (_, _, key) in zip(asked, FACTS)]
            results[name] = {"answered": sum(answered), "of": len(FACTS), "rows": rows,
                             "errors": sum(1 for r in rows if r["error"])}
            print(name, "answered", sum(answered), "of", len(FACTS), flush=True)
    base, ikv = results["llama_cpp.server"], results["ikv serve"]
    quiet = [i for i, r in enumerate(ikv["rows"]) if r["recalled"] == [] and r["ttft_s"]  # type: ignore[index]
             and base["rows"][i]["ttft_s"]]  # type: ignore[index]
    med = lambda rows, idx: statistics.median(rows[i]["ttft_s"] for i in idx)  # noqa: E731
    every = [i for i, r in enumerate(ikv["rows"]) if r["ttft_s"] and base["rows"][i]["ttft_s"]]  # type: ignore[index]
    summary = {
        "answered": {"llama_cpp.server": base["answered"], "ikv serve": ikv["answered"],  # type: ignore[index]
                     "of": len(FACTS)},
        "recalled_fact": sum(any(key in t.lower() for t in (r["recalled"] or []))
                             for r, (_, _, key) in zip(ikv["rows"][-len(FACTS):], FACTS)),  # type: ignore[index]
        "ttft_median_s_nothing_recalled": {"requests": len(quiet),
                                           "llama_cpp.server": round(med(base["rows"], quiet), 3),  # type: ignore[index]
                                           "ikv serve": round(med(ikv["rows"], quiet), 3)},  # type: ignore[index]
        "ttft_median_s_all": {"requests": len(every),
                              "llama_cpp.server": round(med(base["rows"], every), 3),  # type: ignore[index]
                              "ikv serve": round(med(ikv["rows"], every), 3)},  # type: ignore[index]
    }
    q = summary["ttft_median_s_nothing_recalled"]
    q["ratio"] = round(q["ikv serve"] / q["llama_cpp.server"], 2)  # type: ignore[index,operator]
    al = summary["ttft_median_s_all"]
    al["ratio"] = round(al["ikv serve"] / al["llama_cpp.server"], 2)  # type: ignore[index,operator]
    print(summary, flush=True)
    receipt.write("serve_compare", {"summary": summary, "servers": results, "ctx": a.ctx,
                                    "keep": a.keep, "filler": a.filler,
                                    "max_tokens": a.max_tokens, "threads": a.threads,
                                    "model": model.name},
                  {"model_sha256": receipt.file_sha256(model)},
                  "python scripts/serve_compare.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
