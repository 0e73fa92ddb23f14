"""`agent-gateway serve`: read settings, scrub the environment, start demo mode if asked, run uvicorn."""

import argparse
import contextlib
import logging
import logging.config
import os
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.main import STARTUP_FAILURE

from gateway import __version__, config, logs
from gateway.app import GatewayServer, create_app
from gateway.auth import redact_logs
from gateway.config import Settings
from gateway.sessions.agent_options import bwrap_installed, tool_isolation_enabled
from gateway.transports.ws_protocol import GatewayWebSocketProtocol

log = logging.getLogger("gateway")

BANNER_WIDTH = 72


def _banner(lines: list[str]) -> None:
    bar = "=" * BANNER_WIDTH
    print("\n".join([bar, *lines, bar]), file=sys.stderr, flush=True)


def demo_active(settings: Settings) -> bool:
    if settings.demo == "on":
        return True
    if settings.demo == "off":
        return False
    return not settings.anthropic_api_key and not settings.anthropic_base_url


def scrub_environment(settings: Settings) -> None:
    """Keep only allow-listed variables: the SDK hands the gateway's whole environment to every CLI."""
    allow = {n.strip() for n in settings.cli_env_allowlist.split(",") if n.strip()}
    for name in list(os.environ):
        if name not in allow:
            del os.environ[name]


def uvicorn_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How uvicorn serves the gateway (tests run the same, with their own port and log level).

    uvicorn logs request lines with their query strings (tickets): its loggers get the redacting
    filter once it has configured them."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": settings.event_loop,
        "ws": GatewayWebSocketProtocol,
        "ws_max_size": settings.max_frame_bytes * 4,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": True,
    }
    uv_config = uvicorn.Config(app, **{**options, **overrides})
    redact_logs("uvicorn.access", "uvicorn.error")
    return uv_config


def serve(settings: Settings) -> None:
    try:
        log_config = logs.logging_config(settings.log_format, settings.log_level)
    except ValueError as exc:
        raise SystemExit(f"agent-gateway: --log-format: {exc}") from None
    logging.config.dictConfig(log_config)
    logging.captureWarnings(True)  # the SDK's warnings too, in the chosen format
    if settings.demo not in ("auto", "on", "off"):
        raise SystemExit("agent-gateway: --demo must be auto, on or off")
    settings.demo = "on" if demo_active(settings) else "off"  # decided once: `/healthz` reports it
    if settings.demo == "on":
        from gateway.scripted_model.server import ScriptedModelServer

        model = ScriptedModelServer()
        settings.anthropic_base_url = model.start_in_thread()
        settings.anthropic_api_key = "demo-mode"
        _banner([
            "DEMO MODE: no Anthropic API key is set, so an offline scripted model answers.",
            f"  scripted model at {settings.anthropic_base_url}",
            "  Try prompts with 'run a command', 'ask me a question' or 'write a long story'.",
            "  Set ANTHROPIC_API_KEY (and AGENT_GATEWAY_DEMO=off in production) for a real model.",
        ])
    elif not settings.anthropic_api_key and not settings.anthropic_base_url:
        raise SystemExit("agent-gateway: no model configured. Set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL), or run with --demo on.")
    if settings.tool_env_isolation not in ("auto", "on", "off"):
        raise SystemExit("agent-gateway: --tool-env-isolation must be auto, on or off")
    if settings.event_loop not in ("auto", "asyncio", "uvloop"):
        raise SystemExit("agent-gateway: --event-loop must be auto, asyncio or uvloop")
    if not tool_isolation_enabled(settings):
        if settings.tool_env_isolation == "auto":
            _banner(["WARNING: bubblewrap (bwrap) is not installed: the agent's tool calls (Bash...)",
                     "can read the CLI's credentials (ANTHROPIC_API_KEY). Install bubblewrap."])
    elif not bwrap_installed():
        raise SystemExit("agent-gateway: --tool-env-isolation on needs bubblewrap (bwrap) on PATH")
    if settings.scrub_environment:
        scrub_environment(settings)
    app = create_app(settings)
    auth = app.state.auth
    if auth.disabled:
        _banner(["WARNING: AUTHENTICATION IS DISABLED (--insecure-no-auth).", "Anyone who can reach this port controls agents. Never use this in production."])
    elif auth.generated_token:
        _banner([
            "No AGENT_GATEWAY_TOKENS configured: generated a token for principal 'dev':",
            f"  {auth.generated_token}",
            f"  Chat page: http://{settings.host}:{settings.port}/#token={auth.generated_token}",
        ])
    server = GatewayServer(uvicorn_config(app, settings, log_config=log_config), app.state.manager)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: SIGINT ends the process quietly
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run: it logged why (e.g. the port is taken)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agent-gateway", description="Realtime gateway for Claude Agent SDK sessions.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="Run the gateway.")
    config.add_arguments(serve_parser)
    commands.add_parser("config-doc", help="Print the settings table (Markdown).")
    args = parser.parse_args(argv)
    if args.command == "config-doc":
        print(config.markdown_table())
        return
    serve(config.load(args))
