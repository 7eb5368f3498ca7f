"""`ikv serve`'s HTTP side: the OpenAI chat API on Starlette, served by uvicorn.

Starlette and uvicorn are the ASGI pair under llama-cpp-python's own server (through
FastAPI) and most Python model servers: small, well kept, and enough for four routes without
FastAPI's pydantic layer. Requests are checked here (size, JSON, types, the API key) before
anything reaches the model; the model's side is `service.py`, run in a thread per request.
Every response to a chat completion carries, besides OpenAI's fields, an `ikv` object that
clients ignore: the session, the turn, and what was recalled (source, turn or token range,
score).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ikv_local.chat import ChatSettings
from ikv_local.conversation import BadRequest, Exchange, parse_messages
from ikv_local.errors import IkvError
from ikv_local.service import Busy, Reply, Service
from ikv_local.stream import FirstTextTrimmed

MAX_BODY = 8 << 20  # bytes in a request
MAX_TOKENS = 1 << 16


def error(status: int, message: str, kind: str = "invalid_request_error",
          param: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": None}}, status_code=status)


def _number(body: dict[str, Any], key: str, lo: float, hi: float, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"'{key}' must be {kind} from {lo:g} to {hi:g}")
    return value


def settings_from(body: dict[str, Any], base: ChatSettings) -> ChatSettings:
    """The sampling fields of a request over the server's own settings."""
    max_tokens = _number(body, "max_completion_tokens", 1, MAX_TOKENS, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", 1, MAX_TOKENS, integer=True)
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1)
    seed = _number(body, "seed", -(1 << 63), (1 << 63) - 1, integer=True)
    _number(body, "n", 1, 1, integer=True)  # one choice only
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                             or not all(isinstance(s, str) and s for s in stop)):
        raise BadRequest("'stop' must be a string or a list of up to 4 strings")
    params = base.params
    if temperature is not None:
        params = replace(params, temperature=float(temperature))
    if top_p is not None:
        params = replace(params, top_p=float(top_p))
    if seed is not None:
        params = replace(params, seed=seed % 0xFFFFFFFF)
    return replace(base, params=params, max_tokens=max_tokens or base.max_tokens,
                   stops=tuple(stop or ()))


def _extra(reply: Reply) -> dict[str, Any]:
    t = reply.turn
    return {"session": reply.session, "turn": t.n, "branched_from": reply.branched_from,
            "appended": reply.appended, "stopped": t.stopped,
            "recall_seconds": t.recall_seconds, "ttft_seconds": t.ttft_seconds,
            "recalled": [{"from": s["from"], "source": s["source"], "start": s["start"],
                          "end": s["end"], "score": s["score"], "text": s["text"]}
                         for s in reply.recalled]}


def create_app(service: Service, *, api_key: str | None = None, max_body: int = MAX_BODY,
               log: bool = True) -> Starlette:
    """The ASGI app around `service`."""
    created = int(time.time())

    def say(line: str) -> None:
        if log:
            print(line, file=sys.stderr, flush=True)

    async def checked(request: Request) -> Response | None:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return error(401, "a valid API key is needed: Authorization: Bearer KEY",
                         "authentication_error")
        return None

    async def health(request: Request) -> Response:
        return await checked(request) or JSONResponse({"status": "ok", "model": service.model_id,
                                                       "queued": service.waiting})

    async def models(request: Request) -> Response:
        return await checked(request) or JSONResponse({"object": "list", "data": [
            {"id": service.model_id, "object": "model", "created": created, "owned_by": "ikv"}]})

    async def completions(request: Request) -> Response:
        refused = await checked(request)
        if refused:
            return refused
        t0 = time.perf_counter()
        try:
            size = int(request.headers.get("content-length") or 0)
        except ValueError:
            size = 0
        if size > max_body:
            return error(413, f"the request is {size:,} bytes; at most {max_body:,}")
        raw = await request.body()
        if len(raw) > max_body:
            return error(413, f"the request is {len(raw):,} bytes; at most {max_body:,}")
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            exchange = parse_messages(body.get("messages"))
            settings = settings_from(body, service.settings)
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise BadRequest("'stream' must be true or false")
            user = request.headers.get("x-session") or body.get("user")
            if user is not None and not isinstance(user, str):
                raise BadRequest("'user' must be a string")
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, f"the body is not valid JSON: {exc}")
        except BadRequest as exc:
            return error(400, str(exc))
        try:
            service.enter()
        except Busy as exc:
            say(f"POST /v1/chat/completions 429 queue full ({service.waiting})")
            return error(429, str(exc), "rate_limit_exceeded")
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if stream:
            return StreamingResponse(_stream(cid, exchange, settings, user, t0),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            reply = await asyncio.to_thread(service.answer, exchange, settings, user)
        except IkvError as exc:
            say(f"POST /v1/chat/completions 400 {exc}")
            return error(400, str(exc))
        finally:
            service.leave()
        say(_line(200, reply, t0, False))
        text = reply.turn.answer.strip()
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()),
            "model": service.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.turn.tokens,
                      "total_tokens": reply.prompt_tokens + reply.turn.tokens},
            "ikv": _extra(reply)})

    async def _stream(cid: str, exchange: Exchange, settings: ChatSettings, user: str | None,
                      t0: float) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        trimmed = FirstTextTrimmed()

        def on_text(chunk: str) -> None:
            chunk = trimmed(chunk)
            if chunk:
                loop.call_soon_threadsafe(queue.put_nowait, ("text", chunk))

        def work() -> None:
            try:
                reply = service.answer(exchange, settings, user, on_text, cancel)
                loop.call_soon_threadsafe(queue.put_nowait, ("done", reply))
            except IkvError as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            except BaseException as exc:  # reported to the client, then raised
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
                raise
            finally:
                service.leave()

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
            return "data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": service.model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more}) + "\n\n"

        threading.Thread(target=work, name="ikv-answer", daemon=True).start()
        done = False
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield chunk({"content": value})
                elif kind == "done":
                    done = True
                    say(_line(200, value, t0, True))
                    yield chunk({}, value.finish_reason, ikv=_extra(value))
                    yield "data: [DONE]\n\n"
                    return
                else:
                    done = True
                    say(f"POST /v1/chat/completions (stream) error: {value}")
                    yield "data: " + json.dumps({"error": {"message": str(value), "type": "server_error",
                                                           "param": None, "code": None}}) + "\n\n"
                    return
        finally:
            if not done:  # the client went away: the answer stops at its next token
                cancel.set()
                say("POST /v1/chat/completions (stream) client went away: answer stopped")

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ])


def _line(status: int, reply: Reply, t0: float, stream: bool) -> str:
    t = reply.turn
    what = (f"session {reply.session} turn {t.n}"
            + (f" (branched from {reply.branched_from})" if reply.branched_from else "")
            + (f", {reply.appended} exchange(s) appended" if reply.appended else "")
            + f", {len(reply.recalled)} recalled, {t.tokens} tokens, {t.stopped}")
    return (f"POST /v1/chat/completions{' (stream)' if stream else ''} {status} "
            f"{time.perf_counter() - t0:.2f}s {what}")
