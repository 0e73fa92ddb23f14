"""Redis faults through real processes: two gateway replicas on their own redis-server, which is
paused (unreachable: connections open, nothing answers), killed and started again empty, or killed
and replaced by its replica (a Sentinel failover) while a session streams. The owner keeps its CLI, `/readyz` says 503 meanwhile, every client ends with a
contiguous duplicate-free history (or an explicit reset), and events flow again soon after Redis is
back (the time is printed: `pytest -s`).
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from tests.integration.test_cluster import replicas, ws
from tests.integration.test_failover import logged, owner
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.redis_server import RedisSentinel, RedisServer

# About 8 s of paced streaming: the fault falls in the middle of it.
LONG = 'SCRIPT:{"steps": [[{"text": "' + "word " * 80 + '"}]], "chunk": 2, "delay_ms": 50}'
RECOVERY_S = 5.0  # the bound: events flow again within this of Redis returning
FAST = {"AGENT_GATEWAY_LEASE_TTL_S": "2", "AGENT_GATEWAY_REDIS_TIMEOUT_S": "0.5"}


@pytest.fixture
def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:  # type: ignore[misc]
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.resume()
        server.stop()


async def ready(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code


async def until_ready(port: int, status: int, within_s: float = 10) -> None:
    async with asyncio.timeout(within_s):
        while await ready(port) != status:
            await asyncio.sleep(0.1)


async def streaming(tab: WsClient, count: int) -> None:
    """Until `tab` has seen `count` stream events."""
    async with asyncio.timeout(30):
        while tab.kinds().count("stream") < count:
            await tab.recv()


async def next_event_after(tab: WsClient, since: float) -> float:
    """Seconds from `since` until `tab` gets its next event."""
    seen = len(tab.events)
    async with asyncio.timeout(30):
        while len(tab.events) == seen:
            await tab.recv()
    return time.monotonic() - since


async def result_of(tab: WsClient, query_id: str) -> dict[str, Any]:
    return await tab.event("result", lambda e: e["query_id"] == query_id, timeout=60)


async def two_tabs(cluster: list[tuple[Any, int]], on: int = 0) -> tuple[WsClient, WsClient, str]:
    """A session on replica `on` with a tab there, and a tab following it on the other replica."""
    port1, port2 = cluster[on][1], cluster[1 - on][1]
    tab = await ws(port1)
    session_id = (await open_session(tab))["session"]["session_id"]
    other = await ws(port2)
    assert (await attach(other, session_id))["type"] == "attached"
    return tab, other, session_id


def same_history(tab: WsClient, logged_frames: list[dict[str, Any]]) -> None:
    seen = [{k: v for k, v in f.items() if k != "_seen"} for f in tab.events]
    assert seen == logged_frames[: len(seen)] and len(seen) == len(logged_frames)


async def test_an_unreachable_redis_pauses_clients_then_everything_is_written_in_order(tmp_path: Path, model_url: str, own_redis: RedisServer) -> None:
    async with replicas(tmp_path, model_url, own_redis.url, **FAST) as cluster:
        (first, port1), (second, port2) = cluster
        tab, other, session_id = await two_tabs(cluster)
        query_id = (await query(tab, LONG))["result"]["query_id"]
        await streaming(tab, 5)
        own_redis.pause()  # past the lease (2 s): leases run out, nobody may adopt
        try:
            await until_ready(port1, 503)
            await asyncio.sleep(3)
            assert await ready(port2) == 503
        finally:
            own_redis.resume()
        back = time.monotonic()
        recovered_s = await next_event_after(tab, back)
        print(f"\nRedis paused 3+ s: the owner's tab had events again {recovered_s * 1000:.0f} ms after Redis was back")
        assert recovered_s < RECOVERY_S
        done = await result_of(tab, query_id)
        assert done["subtype"] == "success" and not done["is_error"]  # its CLI ran on: not owner_lost
        await result_of(other, query_id)
        await until_ready(port1, 200)
        assert first.poll() is None and second.poll() is None
        assert await owner(own_redis.url, session_id) == "r1"  # the outage moved nothing
        log = await logged(own_redis.url, session_id)
        assert [f["seq"] for f in log] == list(range(1, len(log) + 1)) and len({f["epoch"] for f in log}) == 1
        same_history(tab, log)
        same_history(other, log)


async def test_a_redis_restarted_empty_gets_the_session_back_and_clients_go_on(tmp_path: Path, model_url: str, own_redis: RedisServer) -> None:
    async with replicas(tmp_path, model_url, own_redis.url, **FAST) as cluster:
        (first, port1), (second, port2) = cluster
        sessions = [await two_tabs(cluster, on) for on in (0, 1)]  # one owned by each replica
        queries = [(await query(tab, LONG))["result"]["query_id"] for tab, _, _ in sessions]
        for tab, _, _ in sessions:
            await streaming(tab, 5)
        epochs = [tab.epoch for tab, _, _ in sessions]
        own_redis.kill()
        await asyncio.sleep(1)
        own_redis.start()  # same port, no data: the fences, leases, registry and logs are gone
        back = time.monotonic()
        recovered_s = max(await asyncio.gather(*(next_event_after(tab, back) for tab, _, _ in sessions)))
        print(f"\nRedis restarted empty: both owners' tabs had events again {recovered_s * 1000:.0f} ms after Redis was back")
        assert recovered_s < RECOVERY_S
        for (tab, other, session_id), query_id, epoch, name, port in zip(sessions, queries, epochs, ("r1", "r2"), (port2, port1)):
            assert (await result_of(tab, query_id))["subtype"] == "success"
            await result_of(other, query_id)  # the tab on the other replica went on too, without a gap
            assert other.epoch == tab.epoch == epoch
            assert not [f for f in other.frames if f["type"] == "reset"]
            assert await owner(own_redis.url, session_id) == name
            log = await logged(own_redis.url, session_id)
            assert log[-1]["seq"] == tab.last_seq and {f["epoch"] for f in log} == {epoch}  # written again, same epoch
            assert [f["seq"] for f in log] == list(range(log[0]["seq"], tab.last_seq + 1))
            # The registry knows it again: a tab on the other replica finds it and its query runs there.
            late = await ws(port)
            late.resume_from(tab)
            assert (await attach(late, session_id, after=tab.last_seq, epoch=epoch))["type"] == "attached"
            again = (await query(late, "SCRIPT:hello"))["result"]["query_id"]
            assert (await result_of(late, again))["subtype"] == "success"
        assert first.poll() is None and second.poll() is None
        await until_ready(port1, 200)
        await until_ready(port2, 200)


async def test_an_overflowing_outage_buffer_ends_in_a_reset_never_a_gap(tmp_path: Path, model_url: str, own_redis: RedisServer) -> None:
    async with replicas(tmp_path, model_url, own_redis.url, AGENT_GATEWAY_REDIS_BUFFER_EVENTS="20", **FAST) as cluster:
        (_, port1), (_, port2) = cluster
        tab, other, session_id = await two_tabs(cluster)
        query_id = (await query(tab, LONG))["result"]["query_id"]
        await streaming(tab, 5)
        own_redis.pause()
        try:
            await asyncio.sleep(2)  # 40 events or so: more than the buffer's 20
        finally:
            own_redis.resume()
        async def resumed(client: WsClient, port: int) -> None:
            with pytest.raises(ConnectionClosed):  # told to resume (1012), not given a gap
                while True:
                    await client.recv(timeout=15)
            assert client.close_code == 1012
            again = await ws(port)
            again.resume_from(client)
            reply = await attach(again, session_id, after=client.last_seq, epoch=client.epoch)
            assert reply["type"] == "reset" and reply["reason"] == "cursor_too_old", reply
            transcript = reply["snapshot"]["transcript"]
            if not any(e["kind"] == "result" and e["query_id"] == query_id for e in transcript):
                await result_of(again, query_id)

        await asyncio.gather(resumed(tab, port1), resumed(other, port2))
        log = await logged(own_redis.url, session_id)
        assert log[0]["seq"] > tab.last_seq + 1  # the log starts after what was lost


async def watched(sentinel: RedisSentinel, replica: RedisServer, within_s: float = 15) -> None:
    """Until `replica` is in sync with its master and `sentinel` knows it: a failover can promote it."""
    async with Redis(port=sentinel.port) as watcher, Redis(port=replica.port) as server, asyncio.timeout(within_s):
        while True:
            known = await watcher.execute_command("SENTINEL", "REPLICAS", sentinel.service)
            if (await server.info("replication"))["master_link_status"] == "up" and known:
                return
            await asyncio.sleep(0.1)


async def diverged(master: RedisServer, replica: RedisServer, session_id: str) -> int:
    """Cuts the replication link until the master holds log entries its replica lacks (asynchronous
    replication at its worst); the master's last seq then."""
    meta = f"ag:{{{session_id}}}:meta"
    async with Redis(port=master.port) as primary, Redis(port=replica.port) as secondary, asyncio.timeout(10):
        await secondary.config_set("masteruser", "nobody")  # its reconnection fails from now on (WRONGPASS)
        await secondary.config_set("masterauth", "wrong")
        await primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
        while (ahead := int(await primary.hget(meta, "last_seq") or 0)) <= int(await secondary.hget(meta, "last_seq") or 0):
            await asyncio.sleep(0.05)
        return ahead


async def stall_after(tab: WsClient, query_id: str, since: float) -> float:
    """Until the turn's result: seconds from `since` to the end of the longest pause in `tab`'s events."""
    last = since
    stall = (0.0, since)
    async with asyncio.timeout(60):
        while True:
            frame = await tab.recv()
            now = time.monotonic()
            stall = max(stall, (now - last, now))
            last = now
            if frame.get("event", {}).get("kind") == "result" and frame["event"]["query_id"] == query_id:
                return stall[1] - since


async def test_a_sentinel_failover_loses_nothing_a_client_saw(tmp_path: Path, model_url: str) -> None:
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica", replica_of=master).start()
    sentinel = RedisSentinel(tmp_path / "sentinel", master, down_after_ms=500)
    try:
        sentinel.start()
        await watched(sentinel, replica)
        # The lease (10 s by default) outlives the failover: the owner keeps its sessions.
        async with replicas(tmp_path, model_url, sentinel.url, AGENT_GATEWAY_REDIS_TIMEOUT_S="0.5") as cluster:
            (first, port1), (second, port2) = cluster
            tab, other, session_id = await two_tabs(cluster)
            query_id = (await query(tab, LONG))["result"]["query_id"]
            await streaming(tab, 5)
            ahead = await diverged(master, replica, session_id)
            master.kill()  # SIGKILL: the replica, promoted, lacks the log's last writes
            killed = time.monotonic()
            async with Redis(port=replica.port) as promoted:
                assert int(await promoted.hget(f"ag:{{{session_id}}}:meta", "last_seq")) < ahead
            _, recovered_s = await asyncio.gather(until_ready(port1, 503), stall_after(tab, query_id, killed))
            print(f"\nRedis master SIGKILLed, Sentinel failover: the owner's tab had events again {recovered_s * 1000:.0f} ms after the kill")
            assert recovered_s < 5 + RECOVERY_S  # detection (0.5 s) + failover + the bound
            assert [f for f in tab.events if f["event"]["kind"] == "result"][-1]["event"]["subtype"] == "success"
            await result_of(other, query_id)
            assert not [f for f in tab.frames + other.frames if f["type"] == "reset"]
            async with Redis(port=replica.port) as promoted:
                assert (await promoted.info("replication"))["role"] == "master"
            assert await owner(replica.url, session_id) == "r1"  # the failover moved nothing
            log = await logged(replica.url, session_id)
            assert [f["seq"] for f in log] == list(range(1, len(log) + 1)) and len({f["epoch"] for f in log}) == 1
            same_history(tab, log)
            same_history(other, log)
            assert [f["event"]["kind"] for f in log].count("result") == 1
            again = (await query(other, "SCRIPT:hello"))["result"]["query_id"]  # through the other replica
            assert (await result_of(other, again))["subtype"] == "success"
            await result_of(tab, again)
            await until_ready(port1, 200)
            await until_ready(port2, 200)
            assert first.poll() is None and second.poll() is None
    finally:
        for server in (sentinel, replica, master):
            server.stop()
