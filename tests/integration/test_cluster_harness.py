"""The multi-replica harness itself: three real gateway processes sharing one Redis behind the shipped
nginx.conf. Round robin spreads consecutive requests and WebSockets over every replica (no
stickiness), every replica says who it is, a replica that is killed or shut down drops out of the
rotation, and one conversation carries on whichever replica each connection lands on."""

import collections
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import WsClient
from tests.support.cluster import Cluster, find_nginx, run_cluster
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS
from tests.support.http import ApiClient


@pytest.fixture
async def cluster(tmp_path: Path, model_url: str) -> AsyncIterator[Cluster]:
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed and could not be installed (scripts/system-deps.sh test)")
    async with run_cluster(tmp_path, model_url, nginx, replicas=3) as running:
        yield running


async def test_consecutive_connections_through_nginx_land_on_every_replica_in_turn(cluster: Cluster) -> None:
    served = []
    for _ in range(6):
        async with httpx.AsyncClient(base_url=cluster.url) as http:  # a new connection each time
            response = await http.get("/readyz")
            assert response.status_code == 200, response.text
            assert {c["name"]: c["ok"] for c in response.json()["checks"]}["redis"] is True
            served.append(response.headers["x-replica"])
    assert all(a != b for a, b in zip(served, served[1:])), served  # round robin: never the same one twice in a row
    assert collections.Counter(served) == {"r1": 2, "r2": 2, "r3": 2}

    sockets = [await WsClient.connect(cluster.ws_url, TOKENS["alice"]) for _ in range(3)]
    assert sorted(s.ws.response.headers["x-replica"] for s in sockets) == ["r1", "r2", "r3"]  # type: ignore[union-attr]
    for s in sockets:
        await s.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_a_killed_or_stopped_replica_leaves_the_rotation(cluster: Cluster, sig: signal.Signals) -> None:
    """A crash (SIGKILL) or a deploy's SIGTERM, after which the replica shuts down cleanly (uvicorn then
    re-raises the signal, so both end by their signal)."""
    cluster.replica("r2").signal(sig)
    assert await cluster.replica("r2").wait() == -sig
    if sig == signal.SIGTERM:
        assert "Application shutdown complete" in cluster.replica("r2").log.read_text()
    async with httpx.AsyncClient(base_url=cluster.url) as http:
        served = [(await http.get("/healthz")).headers["x-replica"] for _ in range(6)]  # GETs that hit r2 are retried
    assert set(served) == {"r1", "r3"}, served


async def test_one_conversation_through_nginx_with_every_connection_on_another_replica(cluster: Cluster) -> None:
    """What the cluster is for, end to end through the shipped nginx.conf: a session opened on one
    replica, resumed and driven over a socket that landed on the next, and replayed in full on the third."""
    first = await WsClient.connect(cluster.ws_url, TOKENS["alice"])
    session_id = (await open_session(first))["session"]["session_id"]
    ack = await query(first, "SCRIPT:hello")
    await first.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
    await first.close()

    second = await WsClient.connect(cluster.ws_url, TOKENS["alice"])
    second.resume_from(first)
    await attach(second, session_id, after=first.last_seq, epoch=first.epoch)
    again = await query(second, "SCRIPT:hello")  # forwarded to the owner when this replica isn't it
    await second.event("result", lambda e: e["query_id"] == again["id"], timeout=60)

    third = await WsClient.connect(cluster.ws_url, TOKENS["alice"])
    await attach(third, session_id)
    await third.until(lambda f: f.get("seq") == second.last_seq, timeout=30)
    served = [c.ws.response.headers["x-replica"] for c in (first, second, third)]  # type: ignore[union-attr]
    assert sorted(served) == ["r1", "r2", "r3"], served
    assert [f["seq"] for f in third.events] == list(range(1, second.last_seq + 1))  # every event once, in order
    assert [f["event"] for f in third.events] == [f["event"] for f in first.events + second.events]
    for client in (second, third):
        await client.close()


async def test_a_chat_through_nginx_on_three_replicas_reaches_every_client_once_in_order(cluster: Cluster) -> None:
    """Issue 8's whole case through the shipped nginx.conf, round robin and no stickiness: three tabs
    on three replicas stream one chat; an approval is answered from two replicas that may not run the
    session (the first answer wins); a socket cut mid-turn resumes through the next replica; an SSE
    stream resumes with Last-Event-ID through yet another. Every client ends with every event once,
    in order (each client checks on arrival)."""
    tabs = [await WsClient.connect(cluster.ws_url, TOKENS["alice"]) for _ in range(3)]
    served = [t.ws.response.headers["x-replica"] for t in tabs]  # type: ignore[union-attr]
    assert sorted(served) == ["r1", "r2", "r3"], served
    session_id = (await open_session(tabs[0]))["session"]["session_id"]
    for tab in tabs[1:]:
        await attach(tab, session_id)

    await query(tabs[1], "SCRIPT:bash")
    request = await tabs[2].event("permission_request", timeout=60)
    answer = {"type": "permission_response", "request_id": request["request_id"], "decision": "allow"}
    await tabs[1].send({**answer, "id": "a1"})
    await tabs[2].send({**answer, "id": "a2"})
    replies = [await tabs[1].until(lambda f: f.get("id") == "a1"), await tabs[2].until(lambda f: f.get("id") == "a2")]
    assert sorted(r["type"] for r in replies) == ["ack", "error"], replies
    assert [r["code"] for r in replies if r["type"] == "error"] == ["request_already_resolved"]
    for tab in tabs:
        assert (await tab.event("request_resolved", timeout=60))["outcome"] == "allowed"
        await tab.event("result", timeout=60)

    ack = await query(tabs[0], "SCRIPT:long")
    await tabs[2].event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta", timeout=60)
    cut = tabs[2]
    cut.abort()  # mid-turn, no close frame
    resumed = await WsClient.connect(cluster.ws_url, TOKENS["alice"])
    assert resumed.ws.response.headers["x-replica"] != served[2]  # type: ignore[union-attr]
    resumed.resume_from(cut)
    resumed.events = cut.events
    assert (await attach(resumed, session_id, after=cut.last_seq, epoch=cut.epoch))["type"] == "attached"
    tabs[2] = resumed
    for tab in tabs:
        await tab.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
    top = max(tab.last_seq for tab in tabs)
    for tab in tabs:
        while tab.last_seq < top:
            await tab.recv(timeout=30)
        assert [f["seq"] for f in tab.events] == list(range(1, top + 1))
        assert [f["event"] for f in tab.events] == [f["event"] for f in tabs[0].events]

    api = ApiClient(cluster.url)
    try:
        half = top // 2
        api.session_id, api.epoch, api.last_seq, api.events = session_id, tabs[0].epoch, half, list(tabs[0].events[:half])
        async with api.stream() as stream:  # Last-Event-ID: the middle of the chat
            await stream.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        assert [f["event"] for f in api.events] == [f["event"] for f in tabs[0].events]
    finally:
        await api.close()
        for tab in tabs:
            await tab.close()
