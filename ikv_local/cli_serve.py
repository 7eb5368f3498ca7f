"""`ikv serve`: the OpenAI-compatible server, a thin shell over `server.py` and `service.py`."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated, Optional

import typer

from ikv_local.cli_options import BudgetOpt, MaxKlOpt, NewCtxOpt, NglOpt, ThreadsOpt, budget_bytes
from ikv_local.errors import IkvError


class ServerMissing(IkvError):
    exit_code = 2


class CannotListen(IkvError):
    exit_code = 2


def serve_cmd(
    model: Annotated[Optional[str], typer.Argument(help="GGUF model; the demo model when omitted.")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8080,
    ctx_size: NewCtxOpt = None,
    kv_budget: BudgetOpt = None,
    max_kl: MaxKlOpt = None,
    n_gpu_layers: NglOpt = 0,
    threads: ThreadsOpt = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="IKV_API_KEY", help="Require Authorization: Bearer KEY.")] = None,
    max_tokens: Annotated[int, typer.Option("-n", "--max-tokens", min=1, help="Answer length when a request gives none.")] = 512,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Requests waiting for the model before 429.")] = 8,
) -> None:
    """An OpenAI-compatible server (/v1/chat/completions) whose conversations never forget."""
    try:
        import uvicorn

        from ikv_local.server import create_app
    except ImportError:
        raise ServerMissing("ikv serve needs the server extra: pip install 'ikv[server]' "
                            "(starlette and uvicorn)") from None
    from ikv_local.budget import plan_session
    from ikv_local.chat import ChatSettings
    from ikv_local.cli_output import err_console
    from ikv_local.model_file import resolve_model
    from ikv_local.paths import data_dir
    from ikv_local.service import Service
    from ikv_local.session import OpenOptions

    err = err_console()
    path = resolve_model(model)
    shape = plan_session("api-", str(path), budget_bytes(kv_budget), n_ctx=ctx_size,
                         max_kl=max_kl, n_threads=threads, n_gpu_layers=n_gpu_layers)
    options = OpenOptions(model=str(path), n_ctx=shape.n_ctx, n_threads=threads,
                          n_gpu_layers=n_gpu_layers, type_k=shape.type_k, type_v=shape.type_v)
    service = Service(options, ChatSettings(max_tokens=max_tokens), max_queue=max_queue)
    if api_key is None and not _loopback(host):
        err.print(f"ikv: warning: serving on {host} without --api-key: anyone who can reach "
                  "this address can read and add to every conversation", markup=False)
    sock = _listening(host, port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(service, api_key=api_key), log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"ikv serve · http://{shown}:{port}/v1 · model {path.name} · window "
              f"{shape.n_ctx:,} · sessions in {data_dir() / 'sessions'} · "
              f"{'API key required' if api_key else 'no API key'}", markup=False, soft_wrap=True)
    try:
        server.run(sockets=[sock])
    finally:
        service.close()
        sock.close()


def _listening(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything is printed: a port in use is one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
