"""The ASGI application: routes, shared state and the lifespan that starts and stops sessions."""

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.profiles import Profile, load_profiles
from gateway.sessions.manager import RunnerFactory, SessionManager
from gateway.transports import http_api, metrics_endpoint, openapi
from gateway.transports.problems import EXCEPTION_HANDLERS
from gateway.transports.quota import ConnectionQuota
from gateway.transports.websocket import websocket_endpoint

log = logging.getLogger("gateway")

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings, profiles: dict[str, Profile] | None = None, runner_factory: RunnerFactory | None = None) -> Starlette:
    profiles = profiles if profiles is not None else load_profiles(settings.config)
    manager = SessionManager(settings, profiles, runner_factory)
    auth = Authenticator(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("gateway started on %s", type(asyncio.get_running_loop()).__module__.partition(".")[0])
        await manager.start()
        scrape_port = None
        if settings.metrics_port:
            scrape_port = await metrics_endpoint.serve_port(manager.metrics, settings.metrics_host, settings.metrics_port)
        try:
            yield
        finally:
            if scrape_port is not None:
                scrape_port.close()
            await manager.shutdown()

    app = Starlette(
        routes=[
            WebSocketRoute("/v1/ws", websocket_endpoint),
            *http_api.routes(openapi.ALL_OPERATIONS),
            Route("/metrics", metrics_endpoint.metrics, methods=["GET"]),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True, follow_symlink=True), name="static"),
        ],
        middleware=[*replica_middleware(manager.cluster.replica_id if manager.cluster else settings.replica_id), *cors_middleware(settings)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.auth = auth
    app.state.connections = ConnectionQuota(settings)
    app.state.check_lock = asyncio.Lock()
    return app


class GatewayServer(uvicorn.Server):
    """uvicorn, with the sessions closed before the connections.

    On SIGTERM uvicorn closes every WebSocket (1012) and only then runs the lifespan's shutdown:
    the sessions' last events (each query's `result`, each session's `closed`) would never reach
    their clients. Here the sessions are closed first and their clients drained, then uvicorn goes on.
    """

    def __init__(self, config: uvicorn.Config, manager: SessionManager) -> None:
        super().__init__(config)
        self._manager = manager

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._manager.shutdown()
        await super().shutdown(sockets)


class ReplicaHeader:
    """Adds `X-Replica: <replica_id>` to every HTTP response and WebSocket handshake, so whoever sits
    behind a round-robin load balancer (an operator, a test) can tell which replica answered."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.header = (b"x-replica", replica_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)


def replica_middleware(replica_id: str) -> list[Middleware]:
    return [Middleware(ReplicaHeader, replica_id=replica_id)] if replica_id else []


def cors_middleware(settings: Settings) -> list[Middleware]:
    """CORS for the configured origins; `Last-Event-ID` may be sent (resume) and read (snapshot position)."""
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return []
    return [Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Connection-Id"],
        expose_headers=["Last-Event-ID", "X-Connection-Id", "Location"],
        max_age=600,
    )]
