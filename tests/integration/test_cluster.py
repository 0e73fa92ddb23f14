"""Several real gateway processes sharing one Redis: any replica serves any client of any session.

Clients talk to each replica by port, which is what a round-robin load balancer does to them.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import ApiClient, next_id
from tests.support.process_gateway import gateway_process

FORWARD_TIMEOUT_S = 3.0


@contextlib.asynccontextmanager
async def replicas(tmp_path: Path, model_url: str, redis_url: str, count: int = 2, **env: str) -> AsyncIterator[list[tuple[Any, int]]]:
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for n in range(1, count + 1):
            directory = tmp_path / f"r{n}"
            directory.mkdir()
            started.append(await stack.enter_async_context(gateway_process(
                directory, model_url, AGENT_GATEWAY_REDIS_URL=redis_url, AGENT_GATEWAY_REPLICA_ID=f"r{n}",
                AGENT_GATEWAY_FORWARD_TIMEOUT_S=str(FORWARD_TIMEOUT_S), **env,
            )))
        yield started


@pytest.fixture
async def cluster(tmp_path: Path, model_url: str, redis_url: str) -> AsyncIterator[list[tuple[Any, int]]]:
    async with replicas(tmp_path, model_url, redis_url) as started:
        yield started


@contextlib.asynccontextmanager
async def clients(cluster: list[tuple[Any, int]]) -> AsyncIterator[list[ApiClient]]:
    apis = [ApiClient(f"http://127.0.0.1:{port}") for _, port in cluster]
    try:
        yield apis
    finally:
        for api in apis:
            await api.close()


async def poll_run(api: ApiClient, session_id: str, run_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            response = await api.http.get(f"/v1/sessions/{session_id}/runs/{run_id}")
            assert response.status_code == 200, response.text
            if (run := response.json())["status"] in statuses:
                return run  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)


async def test_a_run_started_on_one_replica_is_followed_on_another(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        created = await one.create(prompt="SCRIPT:hello")
        session_id, run_id = created["session"]["session_id"], created["run"]["run_id"]
        done = await poll_run(two, session_id, run_id, "completed")
        assert done["result"]["is_error"] is False
        status = (await two.http.get(f"/v1/sessions/{session_id}")).json()
        assert status["run"] == done and status["session"]["state"] == "idle"
        snapshot = await two.http.get(f"/v1/sessions/{session_id}/snapshot")
        assert snapshot.headers["last-event-id"] == f"{status['session']['epoch']}:{status['session']['last_seq']}"
        listed = (await two.http.get("/v1/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [session_id]
        bob = ApiClient(two.http.base_url.__str__(), "bob")  # another principal's session is missing, on every replica
        try:
            assert (await bob.http.get(f"/v1/sessions/{session_id}")).status_code == 404
        finally:
            await bob.close()


async def test_an_approval_is_answered_through_a_replica_that_does_not_run_the_session(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        created = await one.create(prompt="SCRIPT:bash")
        session_id, run_id = created["session"]["session_id"], created["run"]["run_id"]
        waiting = await poll_run(two, session_id, run_id, "awaiting_approval")
        two.session_id = session_id
        request_id = waiting["pending"][0]["request_id"]
        ack = await two.frame({"type": "permission_response", "request_id": request_id, "decision": "allow"})
        assert ack["type"] == "ack" and ack.get("duplicate") is not True
        done = await poll_run(one, session_id, run_id, "completed")
        assert "hello-from-agent" in done["result"]["result"]
        again = await two.frame({"type": "permission_response", "request_id": request_id, "decision": "deny"}, expect=409)
        assert again["code"] == "request_already_resolved"


async def test_a_frame_resent_to_another_replica_runs_once(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        created = await one.create()
        one.session_id = two.session_id = session_id = created["session"]["session_id"]
        frame = {"type": "query", "id": next_id("q"), "prompt": "SCRIPT:hello"}
        first = await one.frame(dict(frame))
        second = await two.frame(dict(frame))
        assert second == {**first, "duplicate": True}
        await poll_run(two, session_id, frame["id"], "completed")
        snapshot = (await two.http.get(f"/v1/sessions/{session_id}/snapshot")).json()
        assert [e["query_id"] for e in snapshot["transcript"] if e["kind"] == "user_query"] == [frame["id"]]


async def test_a_session_closed_through_another_replica_is_closed_everywhere(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        session_id = (await one.create())["session"]["session_id"]
        closed = await two.http.delete(f"/v1/sessions/{session_id}")
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        assert (await one.http.get(f"/v1/sessions/{session_id}")).json()["session"]["state"] == "closed"
        one.session_id = session_id
        refused = await one.frame({"type": "query", "prompt": "SCRIPT:hello"}, expect=409)
        assert refused["code"] == "session_closed"


async def test_the_per_principal_limit_counts_every_replica(tmp_path, model_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_MAX_SESSIONS_PER_PRINCIPAL="2") as started, clients(started) as (one, two):
        await one.create()
        await two.create()
        refused = await one.http.post("/v1/sessions", json={})
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_sessions"


async def test_an_owner_that_stopped_answering_gives_owner_unreachable_within_the_bound(cluster) -> None:  # type: ignore[no-untyped-def]
    (owner, _), _ = cluster
    async with clients(cluster) as (one, two):
        one.session_id = two.session_id = session_id = (await one.create())["session"]["session_id"]
        os.kill(owner.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            refused = await two.frame({"type": "query", "id": "q_stopped", "prompt": "SCRIPT:hello"}, expect=503)
            assert refused["code"] == "owner_unreachable" and refused["id"] == "q_stopped"
            assert FORWARD_TIMEOUT_S <= time.monotonic() - started < FORWARD_TIMEOUT_S + 2
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        # The client sends the same frame again: it runs (once) now that the owner answers.
        ack = await two.frame({"type": "query", "id": "q_stopped", "prompt": "SCRIPT:hello"})
        assert ack["result"]["query_id"] == "q_stopped"
        await poll_run(two, session_id, "q_stopped", "completed")


async def test_a_create_resent_to_another_replica_gets_the_same_session(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        first = await one.create(id="create-once", prompt="SCRIPT:hello")
        second = await two.create(id="create-once", prompt="SCRIPT:hello")
        assert second["session"]["session_id"] == first["session"]["session_id"]
        assert second["run"]["run_id"] == first["run"]["run_id"]
        listed = (await two.http.get("/v1/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [first["session"]["session_id"]]
        snapshot = (await two.http.get(f"/v1/sessions/{second['session']['session_id']}/snapshot")).json()
        assert [e["query_id"] for e in snapshot["transcript"] if e["kind"] == "user_query"] == [first["run"]["run_id"]]
