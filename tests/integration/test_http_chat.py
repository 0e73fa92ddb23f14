"""A whole chat over HTTP only: SSE down, POST up, through the real stack (uvicorn, SDK, CLI, scripted model)."""

from collections.abc import AsyncIterator

import pytest

from gateway.scripted_model.script import expected_texts
from tests.support.gateway import RunningGateway
from tests.support.http import ApiClient


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ApiClient]:
    client = ApiClient(gateway.http_url)
    yield client
    await client.close()


async def test_chat_with_approval_over_sse_and_post(api: ApiClient) -> None:
    created = await api.create()
    assert created["session"]["state"] == "idle" and created["run"] is None
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
        status = (await api.http.get(f"/v1/sessions/{api.session_id}")).json()
        assert status["state"] == "awaiting_approval" and status["pending"][0]["request_id"] == request["request_id"]
        await api.frame({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        resolved = await stream.event("request_resolved")
        assert resolved["outcome"] == "allowed" and resolved["by"]["connection"] == "http"
        result = await stream.event("result", lambda e: e["query_id"] == ack["id"], timeout=30)
        assert result["is_error"] is False
        assert "hello-from-agent" in (result["result"] or "")
        await stream.state("idle")
