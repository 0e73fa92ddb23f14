"""One benchmark server process: `python -m bench.serve gateway|real|baseline PORT [auto|asyncio|uvloop] [WS]`.

WS is the uvicorn WebSocket implementation: `gateway` (default; the protocol `agent-gateway serve`
runs, `GatewayWebSocketProtocol` on websockets-sansio), or a uvicorn name (`websockets`,
`websockets-sansio`, `wsproto`).

All run under uvicorn with the WebSocket settings `agent-gateway serve` uses (gateway/cli.py).
`gateway` is the real app with the synthetic agent in place of the runner (no SDK, no CLI); `real`
is the real app on the real path, `SdkRunner` and `ClaudeSDKClient` reading `bench/standin_cli.py`
as the CLI; `baseline` is a bare Starlette WebSocket.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from bench import baseline_app, stages
from bench.synthetic_agent import SyntheticAgent
from gateway.app import create_app
from gateway.config import Settings
from gateway.transports.ws_protocol import GatewayWebSocketProtocol

TOKEN = "bench-token-0123456789"
MAX_SESSIONS = 64
STANDIN_CLI = Path(__file__).with_name("standin_cli.py")


def app_for(kind: str, settings: Settings) -> ASGIApp:
    if kind == "gateway":
        return create_app(settings, runner_factory=SyntheticAgent)
    if kind == "real":
        return create_app(settings)
    if kind == "baseline":
        return baseline_app.app
    raise SystemExit(f"unknown server {kind!r}: gateway, real or baseline")


def main(kind: str, port: int, loop: str, ws: str = "gateway") -> None:
    sessions_dir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    atexit.register(shutil.rmtree, sessions_dir, True)
    settings = Settings(
        tokens=f"bench={TOKEN}", max_sessions=MAX_SESSIONS, max_sessions_per_principal=MAX_SESSIONS, demo="off", event_loop=loop,
        cli_path=str(STANDIN_CLI), anthropic_api_key="bench", tool_env_isolation="off",
        sessions_dir=sessions_dir,
    )
    if os.environ.get(stages.ENV):
        stages.install(os.environ[stages.ENV])
    uvicorn.run(
        app_for(kind, settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop=settings.event_loop,
        ws=GatewayWebSocketProtocol if ws == "gateway" else ws,  # type: ignore[arg-type]
        ws_max_size=settings.max_frame_bytes * 4,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else Settings().event_loop, *sys.argv[4:5])
