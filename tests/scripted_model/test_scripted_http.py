"""SSE encoding, the HTTP endpoints, and the ways of running the server (no CLI)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import msgspec
import pytest

from gateway.scripted_model import ScriptedModelServer, create_app, expected_texts
from gateway.scripted_model.script import Reply, Text, Thinking, ToolUse
from gateway.scripted_model.sse import stream

def parse_sse(raw: str) -> list[dict[str, Any]]:
    """Decode SSE frames, checking that each `event:` name matches its payload's type."""
    events = []
    for frame in raw.strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        data = msgspec.json.decode(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        events.append(data)
    return events


async def collect(reply: Reply) -> list[dict[str, Any]]:
    return parse_sse(b"".join([frame async for frame in stream(reply, "m", 100)]).decode())


async def test_stream_event_sequence_and_reassembly() -> None:
    reply = Reply(
        [Thinking("think hard", "sig"), Text("hello world"), ToolUse("toolu_1", "Bash", {"command": "ls"})],
        "tool_use",
        chunk=4,
    )
    events = await collect(reply)
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 100
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-2]["usage"]["output_tokens"] > 1
    assert events[-1] == {"type": "message_stop"}
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
    ]
    deltas = [e for e in events if e["type"] == "content_block_delta"]
    joined = {k: "".join(d["delta"].get(k, "") for d in deltas) for k in ("thinking", "text", "partial_json")}
    assert joined["thinking"] == "think hard" and joined["text"] == "hello world"
    assert msgspec.json.decode(joined["partial_json"]) == {"command": "ls"}
    assert {"type": "signature_delta", "signature": "sig"} in [d["delta"] for d in deltas]
    assert all(len(d["delta"].get("text", "")) <= 4 for d in deltas)
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]


def asgi_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://model")


async def test_messages_streaming_endpoint() -> None:
    body = {"model": "claude-x", "stream": True, "messages": [{"role": "user", "content": "SCRIPT:hello"}]}
    async with asgi_client() as client:
        resp = await client.post("/v1/messages?beta=true", json=body)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(resp.text)
    assert events[0]["message"]["model"] == "claude-x"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == expected_texts("hello")[0]


async def test_messages_non_streaming_endpoint() -> None:
    body = {"model": "claude-x", "max_tokens": 1, "messages": [{"role": "user", "content": "SCRIPT:hello"}]}
    async with asgi_client() as client:
        msg = (await client.post("/v1/messages", json=body)).json()
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["id"].startswith("msg_")
    assert msg["content"] == [{"type": "text", "text": expected_texts("hello")[0]}]
    assert msg["stop_reason"] == "end_turn" and msg["usage"]["output_tokens"] >= 1


async def test_side_endpoints_and_errors() -> None:
    async with asgi_client() as client:
        body = {"messages": [{"role": "user", "content": "x" * 400}]}
        count = await client.post("/v1/messages/count_tokens", json=body)
        assert count.json()["input_tokens"] > 100
        assert (await client.head("/api/hello")).status_code == 200
        missing = await client.get("/v1/models")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        bad = await client.post("/v1/messages", content=b"{nope")
        assert bad.status_code == 400 and bad.json()["type"] == "error"


async def test_in_loop_server_records_requests() -> None:
    async with ScriptedModelServer() as srv, httpx.AsyncClient() as client:
        await client.post(f"{srv.url}/v1/messages", json={"messages": [{"role": "user", "content": "SCRIPT:hello"}]})
        assert [(r.method, r.path) for r in srv.requests] == [("POST", "/v1/messages")]
        assert srv.requests[0].body["messages"][0]["content"] == "SCRIPT:hello"


def test_thread_server() -> None:
    srv = ScriptedModelServer()
    url = srv.start_in_thread()
    try:
        assert httpx.head(f"{url}/api/hello").status_code == 200
    finally:
        srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.head(f"{url}/api/hello")


def test_module_entry_point_prints_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.scripted_model", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.head(f"{url}/api/hello", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(5)
