"""`ikv serve`: a real uvicorn on 127.0.0.1, the official `openai` client, raw HTTP for errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from openai import OpenAI

from ikv_local.chat import ChatSettings
from ikv_local.haystack import build
from ikv_local.history import History
from ikv_local.sampling import SamplingParams
from ikv_local.server import create_app
from ikv_local.service import Service
from ikv_local.session import OpenOptions, list_sessions, session_info, sessions_dir

pytestmark = pytest.mark.slow  # a model and a server per test

FILLER = build(40, [], [], seed=12).text.split(". ")
LINES = [". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(13)]
TALK = build(120, [], [], seed=13).text.split(". ")
LONG = [". ".join(TALK[5 * i : 5 * i + 5]) + "." for i in range(18)]  # ~4 windows of 512
COUNT = "Count from 1 to 300: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


@contextmanager
def served(demo_path, *, api_key: str | None = None, max_queue: int = 8,
           n_ctx: int = 512) -> Iterator[str]:
    """uvicorn in a thread on a free port; yields the API's base URL."""
    service = Service(OpenOptions(model=str(demo_path), n_ctx=n_ctx),
                      ChatSettings(max_tokens=16, params=SamplingParams.greedy()),
                      max_queue=max_queue)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(service, api_key=api_key, log=False), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(30)
        service.close()


def client(url: str, key: str = "none") -> OpenAI:
    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)


def ask(c: OpenAI, messages: list[dict], **kw):  # type: ignore[no-untyped-def]
    return c.chat.completions.create(model="any", messages=messages, temperature=0, **kw)


def test_models_health_and_a_chat_streamed_and_not(demo_path):
    with served(demo_path) as url:
        c = client(url)
        assert [m.id for m in c.models.list().data] == ["gemma-3-270m-q4_k_m"]
        assert httpx.get(url.removesuffix("/v1") + "/health").json()["status"] == "ok"
        messages = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Say hello."}]
        r = ask(c, messages, max_tokens=8)
        assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
        assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 8
        extra = r.model_extra["ikv"]
        assert extra["turn"] == 1 and extra["session"].startswith("api-")
        messages += [{"role": "assistant", "content": r.choices[0].message.content},
                     {"role": "user", "content": "Say goodbye."}]
        chunks = list(ask(c, messages, max_tokens=8, stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        last = chunks[-1]
        assert last.choices[0].finish_reason in ("stop", "length")
        assert last.model_extra["ikv"]["turn"] == 2
        assert last.model_extra["ikv"]["session"] == extra["session"]
        turns = History(sessions_dir() / extra["session"]).turns
        assert [t.user for t in turns] == ["Say hello.", "Say goodbye."]
        assert turns[-1].answer.strip() == text.strip()


def test_a_long_conversation_sent_as_clients_send_it_recalls_the_first_turn(demo_path):
    """The whole history at first, then only the last few messages (as clients cut theirs):
    one session throughout, and the first turn's fact comes back from the archive."""
    with served(demo_path) as url:
        c = client(url)
        history: list[dict] = []
        sessions = set()
        said = ["Please remember: the vault code is 7316.", *LONG, "What is the vault code?"]
        for i, line in enumerate(said):
            history.append({"role": "user", "content": line})
            sent = history if i < 4 else history[-5:]  # the client keeps its last 5 messages
            r = ask(c, sent, max_tokens=6)  # the answers only fill the history
            extra = r.model_extra["ikv"]
            sessions.add(extra["session"])
            history.append({"role": "assistant", "content": r.choices[0].message.content})
        assert len(sessions) == 1 and extra["turn"] == len(LONG) + 2
        info = session_info(extra["session"])
        assert info.tokens > 3 * 512 and info.archived_tokens > 2 * 512  # rolled several times
        found = [s for s in extra["recalled"] if "7316" in s["text"]]
        assert found and found[0]["from"] == "chat, turn 1"
        assert {"source", "start", "end", "score"} <= set(found[0])


def test_bad_requests_are_400_and_touch_nothing(demo_path):
    with served(demo_path) as url:
        post = url + "/chat/completions"
        ok = {"model": "x", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4}
        assert httpx.post(post, json=ok, timeout=120).status_code == 200
        before = [(i.name, i.turns) for i in list_sessions()]
        bad = [
            b"{not json",
            json.dumps({"messages": "hello"}).encode(),
            json.dumps({**ok, "max_tokens": -5}).encode(),
            json.dumps({**ok, "max_tokens": "ten"}).encode(),
            json.dumps({**ok, "temperature": 9}).encode(),
            json.dumps({**ok, "messages": [{"role": "assistant", "content": "Hi."}]}).encode(),
            json.dumps({**ok, "messages": [{"role": "wizard", "content": "Hi."}]}).encode(),
            json.dumps({**ok, "stop": [1, 2]}).encode(),
        ]
        for body in bad:
            r = httpx.post(post, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (body, r.text)
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["message"]
        huge = httpx.post(post, content=b"x" * (9 << 20))
        assert huge.status_code == 413 and "at most" in huge.json()["error"]["message"]
        assert [(i.name, i.turns) for i in list_sessions()] == before
        assert httpx.post(post, json=ok, timeout=120).status_code == 200  # still serving


def test_an_api_key_is_required_when_given(demo_path):
    with served(demo_path, api_key="sesame") as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.get(url + "/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert client(url, "sesame").models.list().data
        r = httpx.post(url + "/chat/completions", json={"messages": []})
        assert r.status_code == 401  # before the body is even read


def test_two_clients_at_once_on_two_conversations(demo_path):
    with served(demo_path) as url:
        results: dict[str, list[str]] = {}

        def talk(name: str, lines: list[str]) -> None:
            c = client(url)
            history: list[dict] = []
            sessions = []
            for line in lines:
                history.append({"role": "user", "content": line})
                r = ask(c, history, max_tokens=6, user=name)
                history.append({"role": "assistant", "content": r.choices[0].message.content})
                sessions.append(r.model_extra["ikv"]["session"])
            results[name] = sessions

        threads = [threading.Thread(target=talk, args=("ann", LINES[:3])),
                   threading.Thread(target=talk, args=("bob", LINES[3:6]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(set(results["ann"])) == 1 and len(set(results["bob"])) == 1
        ann, bob = results["ann"][0], results["bob"][0]
        assert ann != bob
        assert [t.user for t in History(sessions_dir() / ann).turns] == LINES[:3]
        assert [t.user for t in History(sessions_dir() / bob).turns] == LINES[3:6]


def test_a_named_conversation_goes_on_with_only_the_new_message(demo_path):
    with served(demo_path) as url:
        post = url + "/chat/completions"
        turns = []
        for line in LINES[:3]:
            r = httpx.post(post, headers={"X-Session": "notes"}, timeout=120,
                           json={"messages": [{"role": "user", "content": line}], "max_tokens": 4})
            turns.append((r.json()["ikv"]["session"], r.json()["ikv"]["turn"]))
        assert [t for _, t in turns] == [1, 2, 3] and len({s for s, _ in turns}) == 1
        unnamed = httpx.post(post, timeout=120, json={"messages": [{"role": "user",
                                                                     "content": LINES[0]}]})
        assert unnamed.json()["ikv"]["session"] != turns[0][0]


def test_an_edited_earlier_message_branches_and_leaves_the_old_conversation(demo_path):
    with served(demo_path) as url:
        c = client(url)
        history: list[dict] = []
        for line in LINES[:3]:
            history.append({"role": "user", "content": line})
            r = ask(c, history, max_tokens=6)
            history.append({"role": "assistant", "content": r.choices[0].message.content})
        first = r.model_extra["ikv"]["session"]
        edited = [*history[:2], {"role": "user", "content": "Something else entirely."}]
        r = ask(c, edited, max_tokens=6)
        extra = r.model_extra["ikv"]
        assert extra["branched_from"] == first and extra["session"] != first
        assert extra["turn"] == 2
        assert [t.user for t in History(sessions_dir() / first).turns] == LINES[:3]
        branch = History(sessions_dir() / extra["session"]).turns
        assert [t.user for t in branch] == [LINES[0], "Something else entirely."]


def test_a_full_queue_is_429_and_a_client_that_leaves_stops_its_answer(demo_path):
    with served(demo_path, max_queue=1) as url:
        post = url + "/chat/completions"
        long = {"messages": [{"role": "user", "content": COUNT}], "max_tokens": 400,
                "temperature": 0, "stream": True, "user": "counter"}
        with httpx.stream("POST", post, json=long, timeout=120) as r:
            lines = r.iter_lines()
            seen = [next(lines) for _ in range(6)]  # the answer is under way
            assert any('"content"' in ln for ln in seen)
            busy = httpx.post(post, json={**long, "stream": False, "user": "other"})
            assert busy.status_code == 429
            assert busy.json()["error"]["type"] == "rate_limit_exceeded"
        # the client left: the answer stops at its next token and is kept as stopped
        deadline = time.time() + 60
        name = None
        while time.time() < deadline:
            names = [i.name for i in list_sessions() if i.turns]
            if names:
                name = names[0]
                turns = History(sessions_dir() / name).turns
                if turns and turns[-1].stopped == "cancel":
                    break
            time.sleep(0.2)
        assert name and History(sessions_dir() / name).turns[-1].stopped == "cancel"
        assert History(sessions_dir() / name).turns[-1].tokens < 400


def test_kill_9_mid_stream_then_the_session_resumes_from_its_last_turn(demo_path, ikv_cache):
    port = _free_port()
    cmd = [sys.executable, "-c", "from ikv_local.cli import main; main()", "serve", "-c", "512",
           "--port", str(port), "-n", "400"]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, text=True)
        _wait_healthy(port, proc)
        return proc

    url = f"http://127.0.0.1:{port}/v1"
    proc = start()
    try:
        c = client(url)
        first = [{"role": "user", "content": "Remember the word lantern."}]
        r = ask(c, first, max_tokens=8)
        session = r.model_extra["ikv"]["session"]
        then = [*first, {"role": "assistant", "content": r.choices[0].message.content},
                {"role": "user", "content": COUNT}]
        stream = ask(c, then, max_tokens=400, stream=True)
        got = 0
        for ch in stream:
            got += bool(ch.choices and ch.choices[0].delta.content)
            if got >= 5:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start()
    try:
        r = ask(client(url), [*then[:2], {"role": "user", "content": "Say hi."}], max_tokens=6)
        extra = r.model_extra["ikv"]
        assert extra["session"] == session and extra["turn"] == 2  # the killed turn is not kept
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_startup_line_a_line_per_request_and_the_warning_off_loopback(demo_path, ikv_cache):
    port = _free_port()
    cmd = [sys.executable, "-c", "from ikv_local.cli import main; main()", "serve", "-c", "512",
           "--host", "0.0.0.0", "--port", str(port), "-n", "4"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(port, proc)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                       json={"messages": [{"role": "user", "content": "Hi."}]})
        assert r.status_code == 200
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    assert "warning: serving on 0.0.0.0 without --api-key" in err
    start = next(ln for ln in err.splitlines() if ln.startswith("ikv serve · "))
    assert f"http://0.0.0.0:{port}/v1" in start and "gemma-3-270m-q4_k_m.gguf" in start
    assert "sessions in " in start
    logged = [ln for ln in err.splitlines() if ln.startswith("POST /v1/chat/completions 200")]
    assert len(logged) == 1 and "turn 1" in logged[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(proc.stderr.read() if proc.stderr else "no server")


def test_a_port_in_use_is_one_line(ikv):
    from conftest import assert_one_line_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ikv("serve", "--port", str(port))
    assert_one_line_error(done, 2, f"cannot listen on 127.0.0.1:{port}")
