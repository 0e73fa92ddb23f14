"""Run `python -m gateway serve` as a real process, for signal and shutdown tests."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.support.gateway import TOKENS, free_port


@contextlib.asynccontextmanager
async def gateway_process(tmp: Path, model_url: str, **env: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    environ = {
        "PATH": os.environ["PATH"],
        "AGENT_GATEWAY_PORT": str(port),
        "AGENT_GATEWAY_TOKENS": ",".join(f"{p}={t}" for p, t in TOKENS.items()),
        "AGENT_GATEWAY_SESSIONS_DIR": str(tmp / "sessions"),
        "AGENT_GATEWAY_DEMO": "off",
        "AGENT_GATEWAY_POOL_SIZE": "0",  # as in-process test gateways: tests count the CLIs they start
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "sk-test",
        **env,
    }
    log = open(tmp / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=environ, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                if proc.poll() is not None:
                    raise RuntimeError((tmp / "gateway.log").read_text())
                await asyncio.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
