"""Capacity through the real CLI: hibernation with a transparent wake, and admission control."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.profiles import Profile
from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.http import ApiClient
from tests.support.process_gateway import gateway_process
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


async def test_hibernated_sessions_count_against_the_principals_session_quota(sleepy: RunningGateway) -> None:
    """Hibernating frees a CLI, not a place in `max_sessions_per_principal`: a principal can't
    pile up sleeping sessions past its quota; closing one gives its place back."""
    sleepy.app.state.settings.max_sessions_per_principal = 1
    alice = await WsClient.connect(sleepy.ws_url, TOKENS["alice"])
    await open_session(alice)
    await alice.state("hibernated", timeout=10)
    tab = await WsClient.connect(sleepy.ws_url, TOKENS["alice"])
    refused = await tab.request({"type": "open"})
    assert refused["type"] == "error" and refused["code"] == "too_many_sessions", refused
    bob = await WsClient.connect(sleepy.ws_url, TOKENS["bob"])
    assert (await open_session(bob))["type"] == "attached"  # another principal's quota is its own
    await alice.request({"type": "close"})
    await alice.state("closed")
    assert (await open_session(tab))["type"] == "attached"
    for client in (alice, tab, bob):
        await client.close()


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


# ---- the warm pool ------------------------------------------------------------------------------

POOLED = Profile(
    name="default", model="claude-sonnet-4-5", models=["claude-sonnet-4-5", "claude-haiku-4-5"],
    permission_mode="default", allowed_tools=["Read"],
)


async def pooled_cli(gateway: RunningGateway) -> tuple[str, int]:
    """Wait for the pool's CLI; its future session id and pid."""
    pool = gateway.manager.pool
    async with asyncio.timeout(60):
        while not pool.ready("default"):
            await asyncio.sleep(0.05)
    session_id = pool._ready["default"][0].session_id
    [pid] = cli_pids(workdir(gateway, session_id))
    return session_id, pid


async def test_open_takes_a_pooled_cli_and_the_pool_refills(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, pool_size=1, pool_refill_interval_s=0.1), {"default": POOLED}) as gateway:
        pooled_id, pid = await pooled_cli(gateway)
        alice = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        attached = await open_session(alice)
        assert attached["session"]["session_id"] == pooled_id
        assert cli_pids(workdir(gateway, pooled_id)) == [pid]  # no CLI started for it
        assert gateway.manager.metrics.registry.get_sample_value("gateway_cli_start_seconds_count") == 0  # the pool's starts are not sessions'
        ack = await query(alice, "SCRIPT:hello")
        assert (await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60))["is_error"] is False
        refilled, new_pid = await pooled_cli(gateway)  # the pool starts another for the next open
        assert refilled != pooled_id and new_pid != pid
        await alice.close()


async def test_narrowed_model_and_mode_apply_to_a_pooled_cli_narrowed_tools_start_cold(
    tmp_path: Path, model_url: str, model_server: ScriptedModelServer,
) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, pool_size=1, pool_refill_interval_s=0.1), {"default": POOLED}) as gateway:
        pooled_id, pid = await pooled_cli(gateway)
        alice = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        attached = await open_session(alice, model="claude-haiku-4-5", permission_mode="plan")
        assert attached["session"]["session_id"] == pooled_id and cli_pids(workdir(gateway, pooled_id)) == [pid]
        # The pooled CLI started in `default` on the profile's model: the turn runs in the narrowed
        # mode (the CLI's own report of it) on the narrowed model.
        ack = await query(alice, "SCRIPT:hello marker-narrowed")
        await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        init = await alice.event("system", lambda e: e["subtype"] == "init")
        assert (init["data"]["permissionMode"], init["data"]["model"]) == ("plan", "claude-haiku-4-5"), init
        models = {r.body.get("model") for r in model_server.requests if "marker-narrowed" in json.dumps(r.body.get("messages", []))}
        assert models == {"claude-haiku-4-5"}, models

        # Narrower tools are CLI flags fixed at start: that open starts a CLI of its own.
        spare_id, spare_pid = await pooled_cli(gateway)
        bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
        cold = await open_session(bob, allowed_tools=[])
        assert cold["session"]["session_id"] != spare_id
        assert gateway.manager.pool.ready("default") == 1 and cli_pids(workdir(gateway, spare_id)) == [spare_pid]
        assert len(cli_pids(workdir(gateway, cold["session"]["session_id"]))) == 1
        await bob.close()
        await alice.close()


# ---- with Redis: a hibernated session woken through another replica ---------------------------


async def test_a_hibernated_session_wakes_from_a_query_sent_to_another_replica(
    tmp_path: Path, model_url: str, redis_url: str, model_server: ScriptedModelServer,
) -> None:
    """Two replicas share Redis (conversations in its SessionStore): the session hibernates on its
    owner, a client of the other replica sends the next query, and the owner's new CLI resumes
    the conversation with its context."""
    async with contextlib.AsyncExitStack() as stack:
        ports = []
        for n in (1, 2):
            (tmp_path / f"r{n}").mkdir()
            _, port = await stack.enter_async_context(gateway_process(
                tmp_path / f"r{n}", model_url, AGENT_GATEWAY_REDIS_URL=redis_url, AGENT_GATEWAY_REPLICA_ID=f"r{n}",
                AGENT_GATEWAY_HIBERNATE_AFTER_S="1", AGENT_GATEWAY_POOL_SIZE="0",
            ))
            ports.append(port)
        owner_tab = await WsClient.connect(f"ws://127.0.0.1:{ports[0]}/v1/ws", TOKENS["alice"])
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        first = await query(owner_tab, "remember the word persimmon-4410")
        await owner_tab.event("result", lambda e: e["query_id"] == first["id"], timeout=60)
        await owner_tab.state("hibernated", timeout=15)

        other_tab = await WsClient.connect(f"ws://127.0.0.1:{ports[1]}/v1/ws", TOKENS["alice"])
        assert (await attach(other_tab, session_id))["session"]["state"] == "hibernated"
        second = await query(other_tab, "and the word? marker-replica")
        result = await other_tab.event("result", lambda e: e["query_id"] == second["id"], timeout=60)
        assert result["is_error"] is False
        seen = [f["event"] for f in other_tab.events if f["event"]["kind"] == "state"]  # the replay, then the wake
        woken = seen[[e["state"] for e in seen].index("hibernated") + 1 :]
        assert [e["state"] for e in woken][:3] == ["starting", "running", "idle"] and woken[0]["reason"] == "wake", seen
        assert "persimmon-4410" in seen_by_model(model_server, "marker-replica")
        await other_tab.close()
        await owner_tab.close()


async def test_a_hibernated_session_whose_replica_is_gone_is_adopted_asleep_and_woken_by_a_query(
    tmp_path: Path, model_url: str, redis_url: str, model_server: ScriptedModelServer,
) -> None:
    """Its owner is SIGKILLed while the session sleeps: another replica adopts it without starting a
    CLI (it says `hibernated`, reason `adopted`: adopting a dead node's sleeping sessions costs no
    memory), and the next query, sent through that replica, wakes it with the conversation's context."""
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for n in (1, 2):
            (tmp_path / f"r{n}").mkdir()
            started.append(await stack.enter_async_context(gateway_process(
                tmp_path / f"r{n}", model_url, AGENT_GATEWAY_REDIS_URL=redis_url, AGENT_GATEWAY_REPLICA_ID=f"r{n}",
                AGENT_GATEWAY_HIBERNATE_AFTER_S="1", AGENT_GATEWAY_LEASE_TTL_S="2",
            )))
        (owner, owner_port), (_, other_port) = started
        owner_tab = await WsClient.connect(f"ws://127.0.0.1:{owner_port}/v1/ws", TOKENS["alice"])
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        first = await query(owner_tab, "remember the word quince-7731")
        await owner_tab.event("result", lambda e: e["query_id"] == first["id"], timeout=60)
        await owner_tab.state("hibernated", timeout=15)
        owner.kill()
        owner.wait()

        other_tab = await WsClient.connect(f"ws://127.0.0.1:{other_port}/v1/ws", TOKENS["alice"])
        await attach(other_tab, session_id)
        recovered = await other_tab.until(lambda f: f["type"] == "event" and f["event"]["kind"] == "agent_recovered", timeout=30)
        assert recovered["event"]["reason"] == "owner_lost"
        await asyncio.sleep(1.5)  # an adoption that started a CLI would have said `starting` by now
        assert (await other_tab.request({"type": "ping"}))["type"] == "pong"  # everything sent until now is read
        assert [f["event"] for f in other_tab.events if f["seq"] > recovered["seq"]] == [{"kind": "state", "state": "hibernated", "reason": "adopted"}]
        assert cli_pids(tmp_path / "r2" / "sessions") == []

        second = await query(other_tab, "and the word? marker-adopted")
        result = await other_tab.event("result", lambda e: e["query_id"] == second["id"], timeout=60)
        assert result["is_error"] is False
        woken = [f["event"] for f in other_tab.events if f["seq"] > recovered["seq"] and f["event"]["kind"] == "state"][1:]
        assert [e["state"] for e in woken][:3] == ["starting", "running", "idle"] and woken[0]["reason"] == "wake", woken
        assert "quince-7731" in seen_by_model(model_server, "marker-adopted")
        await other_tab.close()
        await owner_tab.close()
