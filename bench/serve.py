"""One benchmark server process: `python -m bench.serve gateway|baseline PORT [auto|asyncio|uvloop]
[--redis-url URL --replica-id ID] [--log-max-events N]`.

Both run under uvicorn with the WebSocket settings `agent-gateway serve` uses (gateway/cli.py); the
gateway is the real app, with the synthetic agent in place of the CLI, and with `--redis-url` one
replica of a cluster sharing that Redis.
"""

import argparse

import uvicorn
from starlette.types import ASGIApp

from bench import baseline_app
from bench.synthetic_agent import SyntheticAgent
from gateway.app import create_app
from gateway.config import Settings

TOKEN = "bench-token-0123456789"
MAX_SESSIONS = 64


def app_for(kind: str, settings: Settings) -> ASGIApp:
    if kind == "gateway":
        return create_app(settings, runner_factory=SyntheticAgent)
    if kind == "baseline":
        return baseline_app.app
    raise SystemExit(f"unknown server {kind!r}: gateway or baseline")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("kind", choices=("gateway", "baseline"))
    parser.add_argument("port", type=int)
    parser.add_argument("loop", nargs="?", default=Settings().event_loop)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--replica-id", default="")
    parser.add_argument("--log-max-events", type=int, default=Settings().log_max_events)
    args = parser.parse_args(argv)
    settings = Settings(
        tokens=f"bench={TOKEN}", max_sessions=MAX_SESSIONS, max_sessions_per_principal=MAX_SESSIONS, demo="off", event_loop=args.loop,
        redis_url=args.redis_url, replica_id=args.replica_id, log_max_events=args.log_max_events,
    )
    uvicorn.run(
        app_for(args.kind, settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        loop=settings.event_loop,
        ws_max_size=settings.max_frame_bytes * 4,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
    )


if __name__ == "__main__":
    main()
