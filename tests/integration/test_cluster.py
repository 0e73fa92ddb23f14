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
from websockets.exceptions import ConnectionClosed

from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS
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


async def ws(port: int) -> WsClient:
    return await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws", TOKENS["alice"])


def bodies(client: WsClient | ApiClient) -> list[tuple[int, dict[str, Any]]]:
    return [(f["seq"], {k: v for k, v in f["event"].items() if k != "_seen"}) for f in client.events]


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


async def test_sockets_on_every_replica_close_4009_when_a_tab_on_another_replica_closes_the_session(cluster) -> None:  # type: ignore[no-untyped-def]
    """4009 (closed), not 1012 (moved: resume elsewhere), on the owner and elsewhere, the closing tab's too."""
    (_, port1), (_, port2) = cluster
    owner_tab, closing_tab, watching_tab = await ws(port1), await ws(port2), await ws(port2)
    try:
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        for tab in (closing_tab, watching_tab):
            assert (await attach(tab, session_id))["type"] == "attached"
        assert (await closing_tab.request({"type": "close"}))["type"] == "ack"
        for tab in (owner_tab, closing_tab, watching_tab):
            with pytest.raises(ConnectionClosed):
                await tab.until(lambda f: False)
            assert tab.close_code == 4009, tab.close_reason
    finally:
        for tab in (owner_tab, closing_tab, watching_tab):
            await tab.close()


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


async def test_a_session_opened_on_one_replica_is_attached_and_driven_from_another(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    owner_tab, other_tab = await ws(port1), await ws(port2)
    try:
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        reply = await attach(other_tab, session_id)
        assert reply["type"] == "attached" and reply["session"]["state"] == "idle"
        ack = await query(other_tab, "SCRIPT:long")
        assert ack["result"]["query_id"] == ack["id"]
        for tab in (owner_tab, other_tab):
            await tab.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        while other_tab.last_seq < owner_tab.last_seq:
            await other_tab.recv()
        # Each tab asserted contiguity on arrival; both saw every event, the same ones, once.
        assert bodies(other_tab) == bodies(owner_tab)
        assert len(other_tab.text()) > 500
    finally:
        await owner_tab.close()
        await other_tab.close()


async def test_two_tabs_on_two_replicas_answer_one_approval_and_the_first_wins(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    tab1, tab2 = await ws(port1), await ws(port2)
    try:
        session_id = (await open_session(tab1))["session"]["session_id"]
        await attach(tab2, session_id)
        await query(tab2, "SCRIPT:bash")
        request = await tab2.event("permission_request")
        await tab1.event("permission_request")
        answer = {"type": "permission_response", "request_id": request["request_id"], "decision": "allow"}
        await tab1.send({**answer, "id": "a1"})
        await tab2.send({**answer, "id": "a2"})
        replies = [await tab1.until(lambda f: f.get("id") == "a1"), await tab2.until(lambda f: f.get("id") == "a2")]
        assert sorted(r["type"] for r in replies) == ["ack", "error"]
        assert [r["code"] for r in replies if r["type"] == "error"] == ["request_already_resolved"]
        for tab in (tab1, tab2):
            resolved = await tab.event("request_resolved")
            assert resolved["outcome"] == "allowed"
            await tab.event("result", timeout=60)
        while tab2.last_seq < tab1.last_seq:
            await tab2.recv()
        assert bodies(tab2) == bodies(tab1)
    finally:
        await tab1.close()
        await tab2.close()


async def test_a_socket_dropped_mid_turn_resumes_on_another_replica_without_loss(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    observer, tab = await ws(port1), await ws(port1)
    try:
        session_id = (await open_session(observer))["session"]["session_id"]
        await attach(tab, session_id)
        ack = await query(tab, "SCRIPT:long")
        await tab.event("stream")
        for _ in range(5):
            await tab.recv()
        tab.abort()  # mid-turn, no close frame
        resumed = await ws(port2)
        resumed.resume_from(tab)
        resumed.events = tab.events
        reply = await attach(resumed, session_id, after=tab.last_seq, epoch=tab.epoch)
        assert reply["type"] == "attached", reply
        await resumed.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        await observer.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        while resumed.last_seq < observer.last_seq:
            await resumed.recv()
        assert bodies(resumed) == bodies(observer)
        await resumed.close()
    finally:
        await observer.close()


async def test_sse_resumes_with_last_event_id_on_another_replica(cluster) -> None:  # type: ignore[no-untyped-def]
    async with clients(cluster) as (one, two):
        created = await one.create(prompt="SCRIPT:long")
        two.session_id = created["session"]["session_id"]
        run_id = created["run"]["run_id"]
        async with one.stream() as stream:
            await stream.event("stream")
            for _ in range(5):
                await stream.recv()
        two.epoch, two.last_seq, two.events = one.epoch, one.last_seq, list(one.events)
        async with two.stream() as stream:  # Last-Event-ID from the first stream, on the other replica
            await stream.event("result", lambda e: e["query_id"] == run_id, timeout=60)
        done = (await one.http.get(f"/v1/sessions/{two.session_id}/runs/{run_id}")).json()
        assert done["status"] == "completed" and two.last_seq == done["last_seq"]
        # Every event once, in order (checked on arrival), and the same text the run reports.
        assert [f["seq"] for f in two.events] == list(range(1, two.last_seq + 1))
        assert two.text() == done["result"]["result"]


async def test_an_open_resent_to_another_replica_gets_the_same_session(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    one = await ws(port1)
    first = await one.request({"type": "open", "id": "open-once"}, timeout=60)
    one.abort()
    two = await ws(port2)
    try:
        second = await two.request({"type": "open", "id": "open-once"}, timeout=60)
        assert second["type"] == "attached" and second["session"]["session_id"] == first["session"]["session_id"]
        async with clients(cluster) as (api, _):
            assert len((await api.http.get("/v1/sessions")).json()["sessions"]) == 1
    finally:
        await two.close()


async def test_a_session_watched_only_through_another_replica_is_not_reaped(tmp_path, model_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    env = {"AGENT_GATEWAY_IDLE_TIMEOUT_S": "2", "AGENT_GATEWAY_LEASE_TTL_S": "1.5"}
    async with replicas(tmp_path, model_url, redis_url, **env) as started, clients(started) as (one, _):
        session_id = (await one.create())["session"]["session_id"]  # nobody is attached on the owner
        watcher = await ws(started[1][1])
        try:
            assert (await attach(watcher, session_id))["type"] == "attached"
            await watcher.state("idle", timeout=60)
            await asyncio.sleep(5)  # well past the idle timeout (2 s) and the reaper's interval (0.5 s)
            assert (await one.http.get(f"/v1/sessions/{session_id}")).json()["session"]["state"] == "idle"
        finally:
            await watcher.close()
        async with asyncio.timeout(15):  # once the watcher has gone, the idle session is reaped
            while (status := (await one.http.get(f"/v1/sessions/{session_id}")).json()["session"])["state"] != "closed":
                await asyncio.sleep(0.2)
        assert status["state"] == "closed"


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


async def test_a_cursor_from_another_epoch_gets_a_reset_on_another_replica_then_every_later_event_once(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    owner_tab, other_tab = await ws(port1), await ws(port2)
    try:
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        first = await query(owner_tab, "SCRIPT:hello")
        await owner_tab.event("result", lambda e: e["query_id"] == first["id"], timeout=60)
        reply = await attach(other_tab, session_id, after=3, epoch="an-old-epoch")
        assert reply["type"] == "reset" and reply["reason"] == "epoch_mismatch"
        snapshot = reply["snapshot"]
        assert snapshot["session"]["last_seq"] == owner_tab.last_seq
        assert [e["query_id"] for e in snapshot["transcript"] if e["kind"] == "user_query"] == [first["id"]]
        second = await query(owner_tab, "SCRIPT:long")
        for tab in (owner_tab, other_tab):
            await tab.event("result", lambda e: e["query_id"] == second["id"], timeout=60)
        while other_tab.last_seq < owner_tab.last_seq:
            await other_tab.recv()
        # The reset tab continues from the snapshot's position: every later event once, in order.
        assert bodies(other_tab) == [b for b in bodies(owner_tab) if b[0] > snapshot["session"]["last_seq"]]
    finally:
        await owner_tab.close()
        await other_tab.close()


async def test_a_reset_on_another_replica_in_the_middle_of_a_stream_misses_nothing_and_repeats_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    (_, port1), (_, port2) = cluster
    owner_tab = await ws(port1)
    try:
        session_id = (await open_session(owner_tab))["session"]["session_id"]
        turn = await query(owner_tab, "SCRIPT:long")
        await owner_tab.event("stream")
        for attempt in range(3):  # snapshots taken at different points of the stream
            tab = await ws(port2)
            reply = await attach(tab, session_id, after=0, epoch=f"old-{attempt}")
            assert reply["type"] == "reset"
            await tab.event("result", lambda e: e["query_id"] == turn["id"], timeout=60)
            await owner_tab.event("result", lambda e: e["query_id"] == turn["id"], timeout=60)
            while tab.last_seq < owner_tab.last_seq:
                await tab.recv()
            position = reply["snapshot"]["session"]["last_seq"]
            assert bodies(tab) == [b for b in bodies(owner_tab) if b[0] > position]
            await tab.close()
            if attempt < 2:
                turn = await query(owner_tab, "SCRIPT:long")
                await owner_tab.event("stream")
    finally:
        await owner_tab.close()
