"""Run a real gateway (uvicorn, real sockets) inside the test's event loop."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.cli import uvicorn_config
from gateway.config import Settings
from gateway.profiles import Profile

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningGateway:
    app: Starlette
    server: uvicorn.Server
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def manager(self) -> Any:
        return self.app.state.manager


def test_settings(tmp: Path, model_url: str, **overrides: Any) -> Settings:
    base = Settings(
        tokens=",".join(f"{p}={t}" for p, t in TOKENS.items()),
        anthropic_api_key="sk-test",
        anthropic_base_url=model_url,
        sessions_dir=tmp / "sessions",
        demo="off",
        scrub_environment=False,
        idle_timeout_s=600,
        pool_size=0,  # tests count the CLIs they start; the pool's own tests turn it on
    )
    return msgspec.structs.replace(base, **overrides)


@contextlib.asynccontextmanager
async def run_gateway(settings: Settings, profiles: dict[str, Profile] | None = None, runner_factory: Any = None) -> AsyncIterator[RunningGateway]:
    app = create_app(settings, profiles, runner_factory)
    port = free_port()
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield RunningGateway(app, server, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
