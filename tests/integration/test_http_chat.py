"""A whole chat over HTTP only: SSE down, POST up, through the real stack (uvicorn, SDK, CLI, scripted model)."""

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.scripted_model.script import expected_texts
from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient, next_id
from tests.support.processes import cli_pids
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.http import ApiClient, SseStream


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ApiClient]:
    client = ApiClient(gateway.http_url)
    yield client
    await client.close()


async def test_chat_with_approval_over_sse_and_post(api: ApiClient) -> None:
    created = await api.create()
    assert created["session"]["state"] == "starting" and created["run"] is None  # answered before the CLI is up
    async with api.stream(query=False) as stream:
        first = await stream.recv()
        assert first["type"] == "attached" and first["connection"] == stream.connection
        assert stream.parser.retry == 2000
        await stream.state("idle")
        ack = await api.frame({"type": "query", "prompt": "SCRIPT:hello"}, headers={"X-Connection-Id": stream.connection})
        assert ack["type"] == "ack" and ack["result"]["queued"] is False
        query = await stream.event("user_query")
        assert query["by"] == {"principal": "alice", "connection": stream.connection}
        result = await stream.event("result", lambda e: e["query_id"] == ack["id"])
        assert result["is_error"] is False
        assert api.text() == expected_texts("hello")[0]

        ack = await api.frame({"type": "query", "prompt": "SCRIPT:bash"})
        request = await stream.event("permission_request", timeout=30)
        assert request["tool_name"] == "Bash"
        status = (await api.http.get(f"/v1/sessions/{api.session_id}")).json()["session"]
        assert status["state"] == "awaiting_approval" and status["pending"][0]["request_id"] == request["request_id"]
        await api.frame({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        resolved = await stream.event("request_resolved")
        assert resolved["outcome"] == "allowed" and resolved["by"]["connection"] == "http"
        result = await stream.event("result", lambda e: e["query_id"] == ack["id"], timeout=30)
        assert result["is_error"] is False
        assert "hello-from-agent" in (result["result"] or "")
        await stream.state("idle")


async def test_question_model_and_mode_over_post(api: ApiClient) -> None:
    await api.create()
    async with api.stream() as stream:
        await stream.state("idle")
        await api.frame({"type": "query", "prompt": "SCRIPT:ask"})
        question = await stream.event("question", timeout=30)
        await api.frame({"type": "question_response", "request_id": question["request_id"], "answers": {"Which color?": "Blue"}})
        result = await stream.event("result", timeout=30)
        assert result["result"] == expected_texts("ask", answer="Blue")[1]

        await api.frame({"type": "set_model", "model": "claude-haiku-4-5"})
        assert (await stream.event("model_changed"))["model"] == "claude-haiku-4-5"
        await api.frame({"type": "set_permission_mode", "mode": "acceptEdits"})
        assert (await stream.event("permission_mode_changed"))["mode"] == "acceptEdits"
        status = (await api.http.get(f"/v1/sessions/{api.session_id}")).json()["session"]
        assert (status["model"], status["permission_mode"], status["turns"]) == ("claude-haiku-4-5", "acceptEdits", 1)

        frame = {"type": "interrupt", "id": "same-id"}
        assert "duplicate" not in await api.frame(dict(frame))
        assert (await api.frame(dict(frame)))["duplicate"] is True  # a retried POST runs once


# ---- conversation reset, on both transports --------------------------------------------------


def prompts_seen(model: ScriptedModelServer, marker: str) -> str:
    """All the messages of the latest model request whose conversation contains `marker`."""
    for request in reversed(model.requests):
        text = json.dumps(request.body.get("messages", []) if isinstance(request.body, dict) else [])
        if marker in text:
            return text
    raise AssertionError(f"no model request with {marker!r}")


class Transport:
    """Query, reset and read events the same way over WebSocket or over HTTP + SSE."""

    def __init__(self, send: Callable[[dict], Awaitable[dict]], reader: WsClient | SseStream) -> None:
        self.send = send
        self.reader = reader

    async def turn(self, prompt: str) -> dict:
        ack = await self.send({"type": "query", "prompt": prompt, "id": next_id()})
        return await self.reader.event("result", lambda e: e["query_id"] == ack["id"], timeout=30)

    def conversation_id(self) -> str:
        """The Claude session id of the latest turn (from its `init` system event)."""
        inits = [f["event"] for f in self.reader.events if f["event"]["kind"] == "system" and f["event"]["subtype"] == "init"]
        return inits[-1]["data"]["session_id"]  # type: ignore[no-any-return]

    async def reset(self, mode: str) -> dict:
        ack = await self.send({"type": "reset_conversation", "mode": mode, "id": next_id()})
        assert ack["type"] == "ack", ack
        return await self.reader.event("conversation_reset")


@contextlib.asynccontextmanager
async def transport(kind: str, gw: RunningGateway) -> AsyncIterator[Transport]:
    if kind == "ws":
        ws = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await ws.request({"type": "open"}, timeout=60)
        yield Transport(ws.request, ws)
        await ws.close()
        return
    api = ApiClient(gw.http_url)
    await api.create()
    async with api.stream() as stream:
        yield Transport(api.frame, stream)
    await api.close()


@pytest.mark.parametrize("kind", ["ws", "http"])
async def test_soft_and_hard_reset_start_fresh_conversations(kind: str, model_server: ScriptedModelServer, tmp_path: Path) -> None:
    """The scripted model records what the CLI sends: after a reset the model no longer sees old turns."""
    model = model_server
    async with run_gateway(make_settings(tmp_path, model.url)) as gw, transport(kind, gw) as t:
        await t.turn(f"SCRIPT:hello first-{kind}")
        before = t.conversation_id()
        await t.turn(f"second-{kind}")
        assert f"first-{kind}" in prompts_seen(model, f"second-{kind}")  # one conversation so far

        workdir = next(p for p in (tmp_path / "sessions").iterdir() if p.name.startswith("s_")) / "work"
        [cli] = cli_pids(workdir)
        reset = await t.reset("soft")
        assert reset["mode"] == "soft" and reset["by"]["principal"] == "alice"
        await t.turn(f"third-{kind}")
        assert f"first-{kind}" not in prompts_seen(model, f"third-{kind}")  # the model no longer sees the old turns
        assert t.conversation_id() != before
        assert cli_pids(workdir) == [cli]  # soft: the same CLI process

        assert (await t.reset("hard"))["mode"] == "hard"
        await t.turn(f"fourth-{kind}")
        assert f"third-{kind}" not in prompts_seen(model, f"fourth-{kind}")
        assert cli_pids(workdir) not in ([cli], [])  # hard: a new CLI process
