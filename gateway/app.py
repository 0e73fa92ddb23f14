"""The ASGI application: routes, shared state and the lifespan that starts and stops sessions."""

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.profiles import Profile, load_profiles
from gateway.sessions.manager import RunnerFactory, SessionManager
from gateway.transports import http_basic
from gateway.transports.websocket import websocket_endpoint

log = logging.getLogger("gateway")

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings, profiles: dict[str, Profile] | None = None, runner_factory: RunnerFactory | None = None) -> Starlette:
    profiles = profiles if profiles is not None else load_profiles(settings.config)
    manager = SessionManager(settings, profiles, runner_factory)
    auth = Authenticator(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager.start_reaper()
        try:
            yield
        finally:
            await manager.shutdown()

    app = Starlette(
        routes=[
            WebSocketRoute("/v1/ws", websocket_endpoint),
            Route("/healthz", http_basic.healthz),
            Route("/v1/tickets", http_basic.issue_ticket, methods=["POST"]),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.auth = auth
    return app
