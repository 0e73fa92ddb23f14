"""Run the scripted model on a free local port, inside the caller's loop or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from .app import RecordedRequest, create_app

RECORD_LIMIT = 200


def cli_env(base_url: str, home_dir: str) -> dict[str, str]:
    """Env for a Claude Code CLI that should talk only to `base_url` and keep state in `home_dir`."""
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-scripted-model",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "HOME": home_dir,
        "CLAUDE_CONFIG_DIR": f"{home_dir}/.claude",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Listen before serving, so the real port is known up front (port 0 picks a free one)
    and early connections wait in the backlog instead of being refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to its host (pytest, the gateway)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ScriptedModelServer:
    """`async with ScriptedModelServer() as srv: srv.url`, or `start_in_thread()` / `stop()`.

    The port is bound in the constructor, so `url` is valid at once. `requests` keeps the
    most recent requests received, for assertions about what the CLI sent.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: deque[RecordedRequest] = deque(maxlen=RECORD_LIMIT)
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        config = uvicorn.Config(
            create_app(self.requests), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> ScriptedModelServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("scripted model server exited during startup")
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    def start_in_thread(self) -> str:
        """Serve from a daemon thread with its own loop, for sync callers; returns the URL once up."""
        serve = self._server.serve(sockets=[self._sock])
        self._thread = threading.Thread(target=asyncio.run, args=(serve,), name="scripted-model", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("scripted model server exited during startup")
            time.sleep(0.005)
        return self.url

    def stop(self) -> None:
        """Stop a server started with `start_in_thread()` and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
