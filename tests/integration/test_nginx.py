"""The gateway behind a real nginx running deploy/nginx.conf: SSE events arrive one by one, WebSockets pass.

nginx comes from Debian (`scripts/system-deps.sh test` installs it when missing); the test skips only
when it can't be installed.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.client import WsClient
from tests.support.cluster import find_nginx, nginx_config, wait_listening
from tests.support.gateway import TOKENS, RunningGateway, free_port
from tests.support.http import ApiClient


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = find_nginx()
    if found is None:
        pytest.skip("nginx is not installed and could not be installed (scripts/system-deps.sh test)")
    return found


@pytest.fixture
async def proxy(nginx_binary: str, gateway: RunningGateway, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    config = nginx_config(tmp_path, port, [gateway.port])
    process = await asyncio.create_subprocess_exec(
        nginx_binary, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log"),
        "-g", f"daemon off; pid {tmp_path / 'nginx.pid'};",
    )
    try:
        await wait_listening(port, lambda: process.returncode is None, "nginx")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def test_sse_events_arrive_one_by_one_through_nginx(proxy: str) -> None:
    api = ApiClient(f"http://{proxy}")
    await api.create()
    async with api.stream() as stream:
        assert "content-encoding" not in stream.response.headers  # gzip on for text/event-stream, off here
        await stream.state("idle")
        await api.frame({"type": "query", "prompt": "SCRIPT:long"})
        result = await stream.event("result", timeout=30)
        assert result["is_error"] is False
    deltas = [t for f, t in zip(stream.frames, stream.arrivals) if f["type"] == "event" and f["event"]["kind"] == "stream"]
    # The scripted model streams one delta every 20 ms for about 4 s: through a buffering proxy they would
    # arrive in a few large blocks. Unbuffered, almost every delta is a read of its own, spread over the turn.
    assert len(deltas) > 100
    assert deltas[-1] - deltas[0] > 2.0
    gaps = sorted(b - a for a, b in zip(deltas, deltas[1:]))
    assert gaps[len(gaps) // 2] > 0.005, "deltas arrived in bursts: the proxy buffered them"
    assert stream.chunks > len(deltas) * 0.5
    await api.close()


async def test_resume_and_websocket_through_nginx(proxy: str) -> None:
    ws = await WsClient.connect(f"ws://{proxy}/v1/ws", TOKENS["alice"])
    opened = await ws.request({"type": "open"}, timeout=60)
    ack = await ws.request({"type": "query", "prompt": "SCRIPT:hello"})
    await ws.event("result", lambda e: e["query_id"] == ack["id"])
    await ws.close()

    api = ApiClient(f"http://{proxy}")
    api.session_id, api.epoch, api.last_seq = opened["session"]["session_id"], ws.epoch, 3
    api.events.extend(ws.events[:3])
    async with api.stream() as stream:  # Last-Event-ID passes the proxy
        assert (await stream.recv())["after"] == 3
        await api.frame({"type": "query", "prompt": "SCRIPT:hello"})
        await stream.event("result", lambda e: e["query_id"] != ack["id"])
    assert [f["seq"] for f in api.events] == list(range(1, api.last_seq + 1))
    await api.close()
