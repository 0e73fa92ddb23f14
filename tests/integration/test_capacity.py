"""Capacity through the real CLI: hibernation with a transparent wake, and admission control."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.http import ApiClient
from tests.support.processes import cli_pids


def workdir(gateway: RunningGateway, session_id: str) -> Path:
    return gateway.app.state.settings.sessions_dir / session_id / "work"


def seen_by_model(model: ScriptedModelServer, marker: str) -> str:
    """The messages of the latest model request whose conversation contains `marker`."""
    for request in reversed(model.requests):
        text = json.dumps(request.body.get("messages", []) if isinstance(request.body, dict) else [])
        if marker in text:
            return text
    raise AssertionError(f"no model request with {marker!r}")


def states(client: WsClient) -> list[str]:
    return [f["event"]["state"] for f in client.events if f["event"]["kind"] == "state"]


@pytest.fixture
async def sleepy(tmp_path: Path, model_url: str) -> AsyncIterator[RunningGateway]:
    """A gateway whose sessions hibernate after a second."""
    async with run_gateway(make_settings(tmp_path, model_url, hibernate_after_s=1.0)) as gw:
        yield gw


async def test_idle_session_hibernates_and_wakes_with_its_conversation(sleepy: RunningGateway, model_server: ScriptedModelServer) -> None:
    alice = await WsClient.connect(sleepy.ws_url, TOKENS["alice"])
    session_id = (await open_session(alice))["session"]["session_id"]
    first = await query(alice, "remember the word tangerine-7731")
    await alice.event("result", lambda e: e["query_id"] == first["id"], timeout=60)
    [pid] = cli_pids(workdir(sleepy, session_id))

    await alice.state("hibernated", timeout=10)
    for _ in range(100):  # the CLI stops in the background
        if not cli_pids(workdir(sleepy, session_id)):
            break
        await asyncio.sleep(0.05)
    assert cli_pids(workdir(sleepy, session_id)) == []
    info = (await alice.request({"type": "ping"}))  # the socket stays attached and answers
    assert info["type"] == "pong"

    asleep = len(states(alice))
    second = await query(alice, "what was the word? marker-second")
    result = await alice.event("result", lambda e: e["query_id"] == second["id"], timeout=60)
    assert result["is_error"] is False
    assert states(alice)[asleep - 1 : asleep + 3] == ["hibernated", "starting", "running", "idle"], states(alice)
    assert not any(f["event"]["kind"] == "error" for f in alice.events)
    [new_pid] = cli_pids(workdir(sleepy, session_id))
    assert new_pid != pid
    # The new CLI resumed the conversation: the model sees the first turn with the second.
    assert "tangerine-7731" in seen_by_model(model_server, "marker-second")
    await alice.close()


async def test_pending_approval_prevents_hibernation(sleepy: RunningGateway) -> None:
    alice = await WsClient.connect(sleepy.ws_url, TOKENS["alice"])
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request", timeout=60)
    asking = len(states(alice))
    await asyncio.sleep(3.0)  # three times the hibernation delay, waiting on the approval
    assert "hibernated" not in states(alice)[asking:]
    await alice.send({"type": "permission_response", "id": "allow-1", "request_id": request["request_id"], "decision": "allow"})
    result = await alice.event("result", timeout=60)
    assert result["is_error"] is False
    await alice.state("hibernated", timeout=10)  # once the turn is over it may
    await alice.close()


async def test_at_capacity_is_refused_over_ws_and_http_while_existing_sessions_work(tmp_path: Path, model_url: str) -> None:
    settings = make_settings(tmp_path, model_url, max_live_clis=1, hibernate_after_s=0)  # no hibernating to make room
    async with run_gateway(settings) as gateway:
        alice = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        await open_session(alice)

        bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
        refused = await bob.request({"type": "open", "id": "bob-open"})
        assert refused["type"] == "error" and refused["code"] == "at_capacity", refused
        assert refused["id"] == "bob-open" and 1000 <= refused["retry_after_ms"] <= 60_000

        api = ApiClient(gateway.http_url, "bob")
        response = await api.http.post("/v1/sessions", json={})
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        problem = response.json()
        assert problem["code"] == "at_capacity" and problem["retry_after_ms"] >= 1000
        assert gateway.manager.live_count() == 1  # nothing of the refused opens is left

        # The session already running keeps working.
        ack = await query(alice, "SCRIPT:hello")
        result = await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        assert result["is_error"] is False
        await api.close()
        await bob.close()
        await alice.close()


async def test_at_capacity_hibernates_the_longest_idle_session_to_make_room(tmp_path: Path, model_url: str) -> None:
    settings = make_settings(tmp_path, model_url, max_live_clis=1, hibernate_after_s=600)
    async with run_gateway(settings) as gateway:
        first = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        await open_session(first)
        second = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        await open_session(second)  # takes the first one's slot
        assert (await first.event("state", lambda e: e["state"] == "hibernated"))["reason"] == "capacity"

        ack = await query(first, "SCRIPT:hello")  # wakes it: now the second one makes room
        result = await first.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        assert result["is_error"] is False
        await second.state("hibernated")
        assert gateway.manager.capacity.live() == 1
        await first.close()
        await second.close()
