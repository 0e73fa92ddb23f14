"""One benchmark server process: `python -m bench.serve gateway|real|baseline PORT [auto|asyncio|uvloop]
[--redis-url URL --replica-id ID] [--log-max-events N] [--ws WS] [--send-flush-window-ms MS]`.

WS is the uvicorn WebSocket implementation: `gateway` (default; the protocol `agent-gateway serve`
runs, `GatewayWebSocketProtocol` on websockets-sansio), or a uvicorn name (`websockets`,
`websockets-sansio`, `wsproto`).

All run under uvicorn with the WebSocket settings `agent-gateway serve` uses (gateway/cli.py).
`gateway` is the real app with the synthetic agent in place of the runner (no SDK, no CLI); `real`
is the real app on the real path, `SdkRunner` and `ClaudeSDKClient` reading `bench/standin_cli.py`
as the CLI; `baseline` is a bare Starlette WebSocket. With `--redis-url` a gateway is one replica
of a cluster sharing that Redis.
"""

import argparse
import atexit
import os
import shutil
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("kind", choices=("gateway", "real", "baseline"))
    parser.add_argument("port", type=int)
    parser.add_argument("loop", nargs="?", default=Settings().event_loop)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--replica-id", default="")
    parser.add_argument("--log-max-events", type=int, default=Settings().log_max_events)
    parser.add_argument("--ws", default="gateway")
    parser.add_argument("--send-flush-window-ms", type=float, default=Settings().send_flush_window_ms)
    args = parser.parse_args(argv)
    sessions_dir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    atexit.register(shutil.rmtree, sessions_dir, True)
    settings = Settings(
        tokens=f"bench={TOKEN}", max_sessions=MAX_SESSIONS, max_sessions_per_principal=MAX_SESSIONS, demo="off", event_loop=args.loop,
        max_connections_per_principal=1 << 30,  # every bench client is one principal
        cli_path=str(STANDIN_CLI), anthropic_api_key="bench", tool_env_isolation="off",
        sessions_dir=sessions_dir, redis_url=args.redis_url, replica_id=args.replica_id, log_max_events=args.log_max_events,
        send_flush_window_ms=args.send_flush_window_ms,
    )
    if os.environ.get(stages.ENV):
        stages.install(os.environ[stages.ENV])
    uvicorn.run(
        app_for(args.kind, settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        loop=settings.event_loop,
        ws=GatewayWebSocketProtocol if args.ws == "gateway" else args.ws,  # type: ignore[arg-type]
        ws_max_size=settings.max_frame_bytes * 4,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
    )


if __name__ == "__main__":
    main()
