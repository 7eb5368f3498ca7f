"""Every command on a second real model: SmolLM2-135M-Instruct (llama architecture, BPE
vocabulary, 3 KV heads of 64, chat template), through the real CLI and the TUI's pilot; as
Q8_0 (conftest.smollm_path), and the info and import-order tests on the shipped Q4_1 file.

Gemma's SentencePiece vocabulary never reaches the code that usearch's C++ runtime broke;
every BPE model does, so these tests also import usearch first in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, run_ikv

from ikv_local.haystack import build, pass_key_needle

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures

FILLER = build(40, [], [], seed=4).text.split(". ")


def test_usearch_and_numkong_imported_first_then_the_model_loads(smollm_shipped_path):
    code = (
        "import usearch.compiled, usearch.index, numkong\n"
        "from ikv_local.engine import Engine, EngineConfig\n"
        f"e = Engine({str(smollm_shipped_path)!r}, EngineConfig(n_ctx=256))\n"
        "t = e.tokenize('Hello, world! 1234', add_bos=True)\n"
        "e.decode(t, 0)\n"
        "print(len(t), e.detokenize(t))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split(None, 1)[1].strip() == "Hello, world! 1234"
    # the CLI entered the same way
    run = run_ikv(
        "info",
        str(smollm_shipped_path),
        "--no-measure",
        "--json",
        code="import usearch.index, numkong\nfrom ikv_local.cli import main; main()",
    )
    assert run.returncode == 0, run.stderr


def test_info_matches_the_gguf_and_says_memory_works(smollm_shipped_path):
    from gguf_read import reader

    run = run_ikv("info", str(smollm_shipped_path), "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    f = got["facts"]
    fields = reader(smollm_shipped_path).fields
    meta = {k: fields[k].contents() for k in fields if k.startswith("llama.")}
    assert f["arch"] == "llama" and f["rope_type"] == "norm" and f["can_shift"]
    assert f["n_layer"] == meta["llama.block_count"] == 30
    assert f["n_ctx_train"] == meta["llama.context_length"] == 8192
    assert (
        {lay["n_head_kv"] for lay in f["layers"]} == {meta["llama.attention.head_count_kv"]} == {3}
    )
    assert {lay["head_dim_k"] for lay in f["layers"]} == {576 // 9}
    assert {lay["rope_base"] for lay in f["layers"]} == {meta["llama.rope.freq_base"]}
    assert f["has_chat_template"] and f["rope"]["freq_factors"] is None
    assert got["memory"].startswith("yes")
    for cost in got["costs"]:  # computed and llama.cpp's own state size agree
        assert cost["bytes_per_token"] == pytest.approx(cost["measured_bytes_per_token"], abs=0.5)


def test_plan_on_the_second_model(smollm_path):
    run = run_ikv("plan", str(smollm_path), "--kv-budget", "16MiB", "--json")
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    chosen, f16 = (
        plan["chosen"],
        next(o for o in plan["options"] if o["type_k"] == o["type_v"] == "f16"),
    )
    assert chosen["kv_bytes"] <= 16 * 2**20 and chosen["n_ctx"] > f16["n_ctx"] >= 512
    assert all(o["kl"] is not None for o in plan["options"])  # damage measured on this model
    assert chosen["kl"] <= plan["max_kl"]


def test_ingest_then_ask_recalls_what_left_the_window(smollm_path, demo_path, tmp_path):
    key = pass_key_needle(11)
    doc = tmp_path / "doc.txt"
    doc.write_text(build(140, [key], [0.05], seed=11).text)
    run = run_ikv(
        "ingest", str(doc), "--session", "s", "--model", str(smollm_path), "-c", "1024", "--json"
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["archived_tokens"] > 1000
    run = run_ikv("ask", key.question, "--session", "s", "--json", "-n", "16")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert any(
        key.answer in s["text"] and s["source"].endswith("doc.txt") for s in answer["recalled"]
    )
    # a session made with one model refuses another
    run = run_ikv("ask", "x", "--session", "s", "--model", str(demo_path))
    assert_one_line_error(run, run.returncode, "belongs to model", "another model")
    assert run.returncode != 0
    # a chat model reads what ask recalled in the slot (docs/memory.md: it answered more
    # often so than with the text in its message); a base model reads it by the question
    from ikv_local.ask import ask
    from ikv_local.session import OpenOptions, Session

    with Session("s", OpenOptions(writable=False)) as s:
        for place, slot_filled, lent in (("auto", True, 0), ("question", False, s.window.layout.slot)):
            seen: list[tuple[int, int]] = []
            a = ask(s, key.question, max_tokens=8, place=place,
                    on_text=lambda _, seen=seen: seen.append((s.window.slot_used, s.window.lent)))
            assert a.recalled and len(seen) > 1, (place, a.text)
            assert (seen[0][0] > 0) == slot_filled and seen[0][1] == lent, (place, seen)


def test_piped_chat_across_a_rolled_window(smollm_path):
    turns = [
        "Please remember this: the vault code is 7316.",
        *[". ".join(FILLER[5 * i : 5 * i + 5]) + "." for i in range(8)],
        "What is the vault code?",
    ]
    chat = ["--session", "c", "-c", "512", "--temp", "0", "-n", "16", "--json"]
    run = run_ikv("chat", str(smollm_path), *chat, input="\n".join(turns) + "\n")
    assert run.returncode == 0, run.stderr
    objs = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(objs) == len(turns) and objs[-1]["archived_tokens"] >= 300  # turn 1 left the window
    assert any("7316" in s["text"] and s["source"] == "chat" for s in objs[-1]["recalled"])
    # the chat template's end-of-turn closes every answer: none runs into the next turn
    assert all("<|im_start|>" not in o["answer"] for o in objs)


async def test_the_tui_on_the_second_model(smollm_path):
    from ikv_local.chat import ChatSettings
    from ikv_local.sampling import SamplingParams
    from ikv_local.session import OpenOptions
    from tui.app import IkvApp
    from tui.chat_view import Said

    app = IkvApp("t", OpenOptions(model=str(smollm_path), n_ctx=512),
                 ChatSettings(max_tokens=16, params=SamplingParams.greedy()))
    async with app.run_test(size=(140, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        for text in [
            "Please remember this: the vault code is 7316.",
            *[". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(12)],
            "What is the vault code?",
        ]:
            app.query_one("#input").value = text
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert len(list(app.query(Said))) == 2 * 14
        assert app.state.archived > 0
        assert any("7316" in s["text"] for s in app.state.recalled)


LINES = [". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(9)]


def _held(name: str) -> tuple[list[int], list[tuple[int, int, int | None]], int]:
    """Every token a session holds, where each turn and its window began, and where the
    window's recent tokens begin now."""
    from ikv_local.branch import stream_slice
    from ikv_local.session import OpenOptions, Session

    with Session(name, OpenOptions(writable=False)) as s:
        return (stream_slice(s, 0, s.window.stream_end)["tokens"],
                [(t.n, t.start, t.window_from) for t in s.history.turns],
                s.window.archived + s.window.dropped)


def test_undo_fork_and_search_on_the_second_model(smollm_path):
    chat = ("chat", str(smollm_path), "-c", "512", "--temp", "0", "-n", "12", "--json")
    mistake = "Typed by mistake: " + " ".join(LINES[6:9])
    first = "Please remember this: the vault code is 7316."
    run = run_ikv(*chat, "--session", "a", input="\n".join([first, *LINES[:5], mistake, "/undo"]) + "\n")
    assert run.returncode == 0, run.stderr
    assert "took back turn 7" in run.stderr
    run = run_ikv(*chat, "--session", "b", input="\n".join([first, *LINES[:5]]) + "\n")
    assert run.returncode == 0, run.stderr
    assert _held("a") == _held("b")  # by token id, with the window's place at every turn
    run = run_ikv("sessions", "fork", "a", "f", "--at-turn", "2", "--json")
    assert run.returncode == 0, run.stderr
    tokens, turns, _ = _held("f")
    kept, original, _ = _held("a")
    assert [n for n, _, _ in turns] == [1, 2] and tokens == kept[: original[2][1]]
    found = run_ikv("search", "vault code", "--session", "a", "--json")
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout)["hits"][0]
    assert hit["where"] == "chat, turn 1" and "7316" in hit["text"]


def test_serve_on_the_second_model(smollm_path):
    """The chat template's path: exchanges the session never saw are appended as the template
    writes them, and a conversation the client cuts still finds its first turn."""
    from openai import OpenAI
    from test_server import served

    from ikv_local.session import OpenOptions, Session

    with served(smollm_path) as url:
        c = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
        history = [{"role": "user", "content": "Hello."},
                   {"role": "assistant", "content": "Hi! How can I help?"},
                   {"role": "user", "content": "Please remember this: the vault code is 7316."}]
        r = c.chat.completions.create(model="m", messages=history, max_tokens=12, temperature=0)
        extra = r.model_extra["ikv"]
        assert extra["appended"] == 1 and extra["turn"] == 2
        history.append({"role": "assistant", "content": r.choices[0].message.content})
        for line in [*LINES, "What is the vault code?"]:
            history.append({"role": "user", "content": line})
            r = c.chat.completions.create(model="m", messages=history[-5:], max_tokens=12,
                                          temperature=0)
            history.append({"role": "assistant", "content": r.choices[0].message.content})
            assert r.model_extra["ikv"]["session"] == extra["session"]
        # (the span holding the fact may begin in the appended turn 1 before it)
        assert any("7316" in s["text"] and s["from"] in ("chat, turn 1", "chat, turn 2")
                   for s in r.model_extra["ikv"]["recalled"])
    with Session(extra["session"], OpenOptions(writable=False)) as s:
        given = s.history.turns[0]
        assert given.stopped == "given" and given.answer == "Hi! How can I help?"
        fmt = s.chat_format
        text = s.engine.detokenize(s.archive.records()["token"][: given.end].tolist(), special=True)
        assert text.startswith(fmt.user("Hello.") + "Hi! How can I help?" + fmt.assistant_after)
