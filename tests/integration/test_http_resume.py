"""Resume over SSE: Last-Event-ID after abrupt disconnects, every cursor, mixed transports, resets, keepalives."""

import asyncio
import contextlib
import json
import random
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from gateway.scripted_model.script import expected_texts
from tests.support.client import WsClient
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.http import ApiClient, SseParser
from tests.support.process_gateway import gateway_process


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ApiClient]:
    client = ApiClient(gateway.http_url)
    yield client
    await client.close()


def assert_complete(client: ApiClient) -> None:
    """Every event of the log exactly once, in order (ApiClient.apply already refused gaps and repeats)."""
    assert [f["seq"] for f in client.events] == list(range(1, client.last_seq + 1))


async def raw_read(port: int, path: str, cursor: str, budget: int) -> bytes:
    """GET the stream over a bare socket, read `budget` bytes (or until it goes quiet), then reset the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\nLast-Event-ID: {cursor}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    data = b""
    with contextlib.suppress(TimeoutError):
        while len(data) < budget:
            chunk = await asyncio.wait_for(reader.read(budget - len(data)), 1)
            if not chunk:
                break
            data += chunk
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    writer.close()
    return data


def dechunk(data: bytes) -> bytes:
    """The body bytes of an HTTP/1.1 chunked transfer, up to where it was cut."""
    out = b""
    while b"\r\n" in data:
        size_line, rest = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        out += rest[:size]
        if len(rest) < size + 2:
            break
        data = rest[size + 2 :]
    return out


async def test_resume_after_abrupt_disconnects_at_many_points(api: ApiClient, gateway: RunningGateway) -> None:
    """Cut the connection (RST) after a random number of bytes, mid-message included, and resume from
    the last complete message's id until the turn is over: every event arrives exactly once."""
    await api.create()
    await api.frame({"type": "query", "prompt": "SCRIPT:long"})
    rng = random.Random(7)
    path = f"/v1/sessions/{api.session_id}/events"
    cursor, cuts = "0", 0
    while not any(f["event"]["kind"] == "result" for f in api.events):
        parser = SseParser()
        data = dechunk(await raw_read(gateway.port, path, cursor, rng.randint(200, 6000)))
        for event_id, frame in parser.feed(data):
            api.apply(frame, event_id)
        cursor = parser.last_event_id or cursor
        cuts += 1
    assert cuts > 10
    assert_complete(api)
    assert api.text() == expected_texts("long")[0]


async def chat_once(api: ApiClient) -> None:
    """Create a session and run one turn over SSE + POST, to the end."""
    await api.create()
    async with api.stream() as stream:
        await stream.recv()
        await api.frame({"type": "query", "prompt": "SCRIPT:hello"})
        await stream.event("result")
        await stream.state("idle")


async def test_every_cursor_replays_exactly_the_rest(api: ApiClient) -> None:
    await chat_once(api)
    top, epoch = api.last_seq, api.epoch
    for after in range(0, top + 1):
        reader = ApiClient(api.http.base_url.__str__())
        reader.session_id, reader.epoch, reader.last_seq = api.session_id, epoch, after
        async with reader.stream(f"{epoch}:{after}", query=after % 2 == 0, follow="false") as stream:
            await stream.drain()
        assert stream.frames[0]["type"] == "attached" and stream.frames[0]["after"] == after
        assert [f["seq"] for f in stream.frames[1:]] == list(range(after + 1, top + 1))
        await reader.close()


async def test_reconnect_with_last_event_id_mid_turn(api: ApiClient) -> None:
    """httpx closes the stream at random points; the next stream sends the last id as Last-Event-ID."""
    await api.create()
    await api.frame({"type": "query", "prompt": "SCRIPT:long"})
    rng = random.Random(3)
    streams = 0
    while not any(f["event"]["kind"] == "result" for f in api.events):
        async with api.stream() as stream:
            streams += 1
            for _ in range(rng.randint(1, 40)):
                frame = await stream.recv()
                if frame["type"] == "event" and frame["event"]["kind"] == "result":
                    break
    assert streams > 3
    assert_complete(api)


async def test_websocket_then_sse_then_websocket(api: ApiClient, gateway: RunningGateway) -> None:
    ws = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    opened = await ws.request({"type": "open"}, timeout=60)
    await ws.request({"type": "query", "prompt": "SCRIPT:long"})
    await ws.event("stream")
    for _ in range(20):
        await ws.recv()
    await ws.close()

    api.session_id, api.epoch, api.last_seq = opened["session"]["session_id"], ws.epoch, ws.last_seq
    api.events.extend(ws.events)
    async with api.stream() as stream:
        assert (await stream.recv())["after"] == ws.last_seq
        await stream.event("result", timeout=30)
        await api.frame({"type": "query", "prompt": "SCRIPT:hello"}, headers={"X-Connection-Id": stream.connection})
        await stream.event("stream")

    ws2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    ws2.epoch, ws2.last_seq = api.epoch, api.last_seq
    attached = await ws2.request({"type": "attach", "session_id": api.session_id, "after": api.last_seq, "epoch": api.epoch})
    assert attached["type"] == "attached"
    await ws2.event("result")
    await ws2.close()
    seqs = [f["seq"] for f in api.events + ws2.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert (api.text() + ws2.text()).endswith(expected_texts("hello")[0])


async def test_too_old_cursor_gets_the_same_reset_as_the_websocket(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, log_max_events=5)) as gw:
        api = ApiClient(gw.http_url)
        await chat_once(api)
        epoch = api.epoch
        api.events.clear()
        api.last_seq = 1
        async with api.stream(f"{epoch}:1") as stream:
            reset = await stream.recv()
            assert reset["type"] == "reset" and reset["reason"] == "cursor_too_old"
            assert reset["connection"] == stream.connection
            kinds = [e["kind"] for e in reset["snapshot"]["transcript"]]
            assert kinds[0] == "user_query" and "result" in kinds
            assert stream.parser.last_event_id == f"{epoch}:{reset['snapshot']['session']['last_seq']}"
            await api.frame({"type": "query", "prompt": "SCRIPT:hello"})
            await stream.event("result")  # live events continue right after the snapshot
        async with api.stream(f"other:{api.last_seq}", follow="false") as stream:
            assert (await stream.recv())["reason"] == "epoch_mismatch"
        async with api.stream(f"{epoch}:{api.last_seq + 1}", follow="false") as stream:
            assert (await stream.recv())["reason"] == "cursor_ahead"

        ws = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        ws_reset = await ws.request({"type": "attach", "session_id": api.session_id, "after": 1, "epoch": epoch})
        assert ws_reset["type"] == "reset" and ws_reset["reason"] == "cursor_too_old"
        assert ws_reset["snapshot"]["session"]["last_seq"] == api.last_seq
        await ws.close()
        snapshot = await api.http.get(f"/v1/sessions/{api.session_id}/snapshot")
        assert snapshot.headers["last-event-id"] == api.cursor
        assert msgspec.json.decode(snapshot.content)["transcript"] == ws_reset["snapshot"]["transcript"]
        await api.close()


async def test_keepalive_comments_on_an_idle_stream(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, sse_keepalive_s=0.2)) as gw:
        api = ApiClient(gw.http_url)
        await api.create()
        async with api.stream() as stream:
            assert stream.response.headers["cache-control"] == "no-cache, no-transform"
            assert stream.response.headers["x-accel-buffering"] == "no"
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.response.headers
            await stream.state("idle")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.1):
                    await stream.recv()  # no frames: only comments arrive
            stamps = [t for t, text in stream.parser.comments if text == "keepalive"]
            assert len(stamps) >= 4
            assert max(b - a for a, b in zip(stamps, stamps[1:])) < 0.6
        await api.close()


async def test_slow_consumer_is_dropped_and_resumes_exactly(tmp_path: Path, model_url: str) -> None:
    """A send queue of 700 bytes overflows on the first burst of events: the stream ends, the client
    reconnects with Last-Event-ID and still gets every event once."""
    async with run_gateway(make_settings(tmp_path, model_url, send_queue_bytes=700)) as gw:
        api = ApiClient(gw.http_url)
        await api.create()
        await api.frame({"type": "query", "prompt": "SCRIPT:long"})
        streams = 0
        while not any(f["event"]["kind"] == "result" for f in api.events):
            async with api.stream() as stream:
                streams += 1
                with contextlib.suppress(StopAsyncIteration):  # the server ended the stream: reconnect
                    await stream.event("result", timeout=30)
            assert streams < 100, "never caught up"
        assert streams > 1
        assert_complete(api)
        await api.close()


async def test_closed_session_stream_ends_and_then_refuses(api: ApiClient) -> None:
    await api.create()
    async with api.stream() as stream:
        await stream.recv()
        await api.http.delete(f"/v1/sessions/{api.session_id}")
        await stream.drain()
    assert stream.frames[-1]["event"] == {"kind": "state", "state": "closed", "reason": "closed by client"}
    response = await api.http.get(f"/v1/sessions/{api.session_id}/events", headers={"Last-Event-ID": api.cursor})
    assert response.status_code == 409 and response.json()["code"] == "session_closed"  # EventSource stops retrying


async def test_sigterm_ends_streams_promptly(tmp_path: Path, model_url: str) -> None:
    """On SIGTERM the stream ends (the client resumes elsewhere) instead of holding the shutdown up."""
    async with gateway_process(tmp_path, model_url) as (proc, port):
        api = ApiClient(f"http://127.0.0.1:{port}")
        await api.create()
        async with api.stream() as stream:
            await stream.state("idle")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await stream.drain(timeout=10)
        assert time.monotonic() - started < 5
        assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)
        log = (tmp_path / "gateway.log").read_text()
        assert "Traceback" not in log and "Application shutdown complete" in log, log
        await api.close()


async def test_stalled_reader_is_cut_and_freed(tmp_path: Path, model_url: str) -> None:
    """A stream whose reader stopped reading (TCP backpressure) is dropped after `sse_send_timeout_s`;
    its backlog is freed as soon as it passes `send_queue_bytes`."""
    burst = "SCRIPT:" + json.dumps({"steps": [[{"text": "y", "repeat": 700_000}]], "chunk": 7000})
    settings = make_settings(tmp_path, model_url, send_queue_bytes=1 << 20, sse_send_timeout_s=2)
    async with run_gateway(settings) as gw:
        api = ApiClient(gw.http_url)
        await api.create()
        session = await gw.manager.get("alice", api.session_id)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", gw.port))
        request = f"GET /v1/sessions/{api.session_id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n\r\n"
        await asyncio.get_running_loop().sock_sendall(stalled, request.encode())
        async with api.stream() as stream:
            for _ in range(6):
                ack = await api.frame({"type": "query", "prompt": burst})
                await stream.event("result", lambda e, qid=ack["id"]: e["query_id"] == qid, timeout=60)
            async with asyncio.timeout(10):
                while session.feed.sink_count > 1:
                    await asyncio.sleep(0.1)
            assert session.connections == 1  # only the reading stream is left
        stalled.close()
        assert_complete(api)
        await api.close()
