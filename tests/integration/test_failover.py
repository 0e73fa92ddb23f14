"""Losing a replica loses nothing a client saw: real gateway processes sharing one Redis, one of them
SIGKILLed (or SIGSTOPped past its lease) while it runs a session.
"""

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from tests.integration.test_cluster import clients, poll_run, replicas, ws
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.http import next_id
from tests.support.process_gateway import gateway_process
from tests.support.processes import session_processes, session_processes_once, survivors

LEASE_S = "2"


async def logged(redis_url: str, session_id: str) -> list[dict[str, Any]]:
    """The session's event frames as its Redis log holds them."""
    redis = aioredis.from_url(redis_url)
    try:
        entries = await redis.xrange(f"ag:{{{session_id}}}:log")
    finally:
        await redis.aclose()
    frames = [msgspec.json.decode(fields[b"f"]) for _, fields in entries]
    assert [int(entry_id.split(b"-")[0]) for entry_id, _ in entries] == [f["seq"] for f in frames]
    return frames


async def owner(redis_url: str, session_id: str) -> str:
    redis = aioredis.from_url(redis_url)
    try:
        return (await redis.hget(f"ag:{{{session_id}}}:meta", "owner") or b"").decode()
    finally:
        await redis.aclose()


async def test_a_session_whose_replica_is_killed_is_adopted_by_another_and_goes_on(tmp_path: Path, model_url: str, redis_url: str) -> None:
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_LEASE_TTL_S=LEASE_S) as cluster, clients(cluster) as (one, two):
        created = await one.create(prompt="SCRIPT:bash")  # a turn that waits on an approval
        session_id, first_run = created["session"]["session_id"], created["run"]["run_id"]
        waiting = await poll_run(two, session_id, first_run, "awaiting_approval")
        request_id = waiting["pending"][0]["request_id"]
        before = await logged(redis_url, session_id)
        assert await owner(redis_url, session_id) == "r1"
        killed_at = time.monotonic()
        os.kill(cluster[0][0].pid, signal.SIGKILL)
        cluster[0][0].wait()

        two.session_id = session_id
        query = {"type": "query", "id": next_id("q"), "prompt": "SCRIPT:hello"}
        ack = await two.frame(query)  # sent while the session has no owner: waits for the adoption, then runs
        adopted_after = time.monotonic() - killed_at
        assert ack["type"] == "ack" and ack["result"]["query_id"] == query["id"]
        done = await poll_run(two, session_id, query["id"], "completed")
        assert done["result"]["is_error"] is False
        assert await owner(redis_url, session_id) == "r2"

        after = await logged(redis_url, session_id)
        assert after[: len(before)] == before  # everything logged stays
        assert [f["seq"] for f in after] == list(range(1, len(after) + 1))  # seq goes on, no gap
        assert {f["epoch"] for f in after} == {before[0]["epoch"]}  # in the same epoch
        events = [f["event"] for f in after[len(before):]]
        kinds = [e["kind"] for e in events]
        recovered = kinds.index("agent_recovered")
        assert events[recovered]["reason"] == "owner_lost" and 0 < events[recovered]["ownerless_ms"] < adopted_after * 1000 + 3000
        settled = events[:recovered]
        assert {"kind": "request_resolved", "request_id": request_id, "outcome": "expired", "message": "the replica running this session was lost"} in settled
        lost = [e for e in settled if e["kind"] == "result"]
        assert [(e["query_id"], e["subtype"], e["is_error"]) for e in lost] == [(first_run, "owner_lost", True)]
        results = [e for e in events if e["kind"] == "result"]
        assert [e["query_id"] for e in results] == [first_run, query["id"]]  # every query ends with exactly one result
        assert await session_processes_once(tmp_path / "r1" / "sessions", lambda found: not found) == []  # its CLI went with it


SLOW = 'SCRIPT:{"steps": [[{"text": "' + "tick " * 80 + '"}]], "chunk": 2, "delay_ms": 100}'  # streams for 20 s


async def logged_when(redis_url: str, session_id: str, ready: Callable[[list[dict[str, Any]]], bool], within_s: float = 30) -> list[dict[str, Any]]:
    async with asyncio.timeout(within_s):
        while not ready(frames := await logged(redis_url, session_id)):
            await asyncio.sleep(0.1)
    return frames


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"]["kind"] for f in frames]


async def test_an_owner_paused_past_its_lease_stops_its_cli_and_writes_nothing_once_resumed(tmp_path: Path, model_url: str, redis_url: str) -> None:
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_LEASE_TTL_S=LEASE_S) as cluster, clients(cluster) as (one, two):
        (first, port1), _ = cluster
        created = await one.create(prompt=SLOW)
        session_id, run = created["session"]["session_id"], created["run"]["run_id"]
        await logged_when(redis_url, session_id, lambda frames: "stream" in kinds(frames))  # its CLI streams a long reply
        tab = await ws(port1)  # a client of the first owner, on its socket
        assert (await attach(tab, session_id))["type"] == "attached"
        clis = session_processes(tmp_path / "r1" / "sessions")
        assert clis
        os.kill(first.pid, signal.SIGSTOP)  # the CLI streams on into its pipe meanwhile
        try:
            def adopted(frames: list[dict[str, Any]]) -> bool:
                found = kinds(frames)
                return "agent_recovered" in found and frames[-1]["event"] == {"kind": "state", "state": "idle"}

            adopted_log = await logged_when(redis_url, session_id, adopted)
            assert await owner(redis_url, session_id) == "r2"
        finally:
            os.kill(first.pid, signal.SIGCONT)
        # Resumed, the first owner reads what its CLI wrote meanwhile and emits it: Redis refuses it
        # (fence), and the owner, told so (or by its next renewal), stops its CLI.
        assert await survivors(clis, within_s=15) == []
        assert await logged(redis_url, session_id) == adopted_log  # it wrote nothing
        with pytest.raises(ConnectionClosed):  # its client is told to resume elsewhere, not that the session closed
            while True:
                await tab.recv(timeout=15)
        assert tab.close_code == 1012
        seen = [{k: v for k, v in f.items() if k != "_seen"} for f in tab.events]
        assert seen == adopted_log[: len(seen)], "the first owner's client saw an event the log doesn't hold"
        one.session_id = session_id
        query = {"type": "query", "id": next_id("q"), "prompt": "SCRIPT:hello"}
        await one.frame(query)  # through the replica that lost it: forwarded to the new owner
        await poll_run(one, session_id, query["id"], "completed")
        final = await logged(redis_url, session_id)
        assert final[: len(adopted_log)] == adopted_log
        assert [f["seq"] for f in final] == list(range(1, len(final) + 1)) and len({f["epoch"] for f in final}) == 1
        assert [(e["query_id"], e["subtype"]) for e in (f["event"] for f in final) if e["kind"] == "result"] == [(run, "owner_lost"), (query["id"], "success")]
        recovered = kinds(final).index("agent_recovered")
        assert "stream" not in kinds(final[recovered: kinds(final).index("user_query", recovered)])


PACED = 'SCRIPT:{"steps": [[{"text": "' + "word " * 30 + '"}]], "chunk": 2, "delay_ms": 50}'  # streams for about 4 s


async def test_a_draining_replica_finishes_its_turns_then_hands_its_sessions_over_at_once(tmp_path: Path, model_url: str, redis_url: str) -> None:
    # The default lease (10 s): the handover must not wait for it to run out.
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_DRAIN_GRACE_S="20") as cluster:
        (first, port1), (_, port2) = cluster
        tab = await ws(port1)
        session_id = (await open_session(tab))["session"]["session_id"]
        running = await query(tab, PACED)
        await tab.event("stream")
        queued = await query(tab, "SCRIPT:hello")  # waits behind the running turn
        assert queued["result"]["queued"] is True
        first.send_signal(signal.SIGTERM)
        terminated_at = time.monotonic()
        async with httpx.AsyncClient() as http:
            async with asyncio.timeout(5):  # unready first, while the turn still runs
                while (await http.get(f"http://127.0.0.1:{port1}/readyz")).status_code != 503:
                    await asyncio.sleep(0.05)
        finished = await tab.event("result", timeout=30)
        assert (finished["query_id"], finished["subtype"]) == (running["id"], "success")  # the running turn finished here
        with pytest.raises(ConnectionClosed):
            while True:  # what the session said here before it left, then the close
                await tab.recv(timeout=30)
        assert tab.close_code == 1012
        resumed = await ws(port2)
        resumed.resume_from(tab)
        reply = await attach(resumed, session_id, after=tab.last_seq, epoch=tab.epoch)
        assert reply["type"] == "attached", reply  # no reset: nothing was lost
        recovered = await resumed.event("agent_recovered", timeout=30)
        assert recovered["reason"] == "handover" and recovered["ownerless_ms"] < 5000
        assert time.monotonic() - terminated_at < 10  # adopted before the lease could have run out
        done = await resumed.event("result", timeout=60)
        assert (done["query_id"], done["subtype"]) == (queued["id"], "success")  # the queued query ran on the new owner
        assert await owner(redis_url, session_id) == "r2"
        events = tab.events + resumed.events
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [(e["event"]["query_id"], e["event"]["subtype"]) for e in events if e["event"]["kind"] == "result"] == [
            (running["id"], "success"), (queued["id"], "success"),
        ]
        assert not [e for e in events if e["event"]["kind"] == "request_resolved"]
        assert await asyncio.to_thread(first.wait, 30) in (0, -signal.SIGTERM)
        assert session_processes(tmp_path / "r1" / "sessions") == []
        await resumed.close()


QUICK = 'SCRIPT:{"steps": [[{"text": "' + "word " * 12 + '"}]], "chunk": 3, "delay_ms": 60}'  # a turn of about 1 s


class Chat:
    """One tab chatting without pause, reconnecting (with resume) to a live replica whenever its
    socket closes; counts the resets it gets (there must be none)."""

    def __init__(self, session_id: str, tab: WsClient, live: list[int]) -> None:
        self.session_id, self.tab, self.live = session_id, tab, live
        self.asked: list[str] = []
        self.resets = 0
        self.reconnects = 0
        self.closes: list[int | None] = []  # each closed socket's close code

    async def run(self, stop: asyncio.Event) -> None:
        query: dict[str, Any] | None = None
        while not stop.is_set() or query is not None:
            try:
                if query is None:
                    query = {"type": "query", "id": next_id("q"), "prompt": QUICK}
                    self.asked.append(query["id"])
                reply = await self.tab.request(dict(query), timeout=60)
                if reply["type"] == "error":  # the session was leaving its replica right then
                    assert reply["code"] == "owner_unreachable", reply
                    await asyncio.sleep(0.2)
                    continue
                assert reply["type"] == "ack", reply
                sent = query["id"]
                await self.tab.event("result", lambda e: e["query_id"] == sent, timeout=90)
                query = None
            except ConnectionClosed:
                self.closes.append(self.tab.ws.close_code)
                await self._reconnect()

    async def _reconnect(self) -> None:
        """To a live replica (one that just began draining may refuse it: then to another)."""
        self.reconnects += 1
        async with asyncio.timeout(30):
            await self._reattach()

    async def _reattach(self) -> None:
        while True:
            try:
                tab = await ws(random.choice(self.live))
                tab.resume_from(self.tab)
                tab.events = self.tab.events
                reply = await attach(tab, self.session_id, after=self.tab.last_seq, epoch=self.tab.epoch)
            except (OSError, ConnectionClosed):
                await asyncio.sleep(0.1)
                continue
            if reply["type"] == "reset":
                self.resets += 1
            self.tab = tab
            return


async def test_a_rolling_restart_during_active_chats_loses_nothing(tmp_path: Path, model_url: str, redis_url: str) -> None:
    env = {"AGENT_GATEWAY_REDIS_URL": redis_url, "AGENT_GATEWAY_FORWARD_TIMEOUT_S": "3", "AGENT_GATEWAY_DRAIN_GRACE_S": "20"}
    async with contextlib.AsyncExitStack() as stack:
        async def start(name: str) -> tuple[Any, int]:
            (tmp_path / name).mkdir()
            return await stack.enter_async_context(gateway_process(tmp_path / name, model_url, AGENT_GATEWAY_REPLICA_ID=name, **env))

        running = {name: await start(name) for name in ("r1", "r2", "r3")}
        live = [port for _, port in running.values()]
        chats = []
        for _, port in running.values():  # a session owned by each replica, its tab on it
            tab = await ws(port)
            chats.append(Chat((await open_session(tab))["session"]["session_id"], tab, live))
        stop = asyncio.Event()
        driving = [asyncio.create_task(chat.run(stop)) for chat in chats]
        try:
            for name in ("r1", "r2", "r3"):
                await asyncio.sleep(1.5)  # turns under way everywhere
                proc, port = running.pop(name)
                replacement = await start(name + "b")
                live.append(replacement[1])
                live.remove(port)
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, 60) in (0, -signal.SIGTERM)
                assert session_processes(tmp_path / name / "sessions") == []
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            _, late = await asyncio.wait(driving, timeout=120)
            for task in late:
                task.cancel()
            await asyncio.wait(driving)
        for task in driving:
            task.result()  # a chat's failure, or its cancellation when it hung
        for chat in chats:
            assert chat.resets == 0
            assert chat.reconnects >= 1 and set(chat.closes) == {1012}, chat.closes
            stored = await logged(redis_url, chat.session_id)
            while chat.tab.last_seq < stored[-1]["seq"]:
                await chat.tab.recv()
            events = chat.tab.events
            assert [{k: v for k, v in f.items() if k != "_seen"} for f in events] == stored  # the client got all of it, once
            results = [(e["event"]["query_id"], e["event"]["subtype"]) for e in events if e["event"]["kind"] == "result"]
            assert results == [(q, "success") for q in chat.asked], results  # every turn ended once, none was lost
            assert [e["event"]["reason"] for e in events if e["event"]["kind"] == "agent_recovered"] == ["handover"] * len(
                [e for e in events if e["event"]["kind"] == "agent_recovered"]
            )
        for chat in chats:
            await chat.tab.close()


async def test_an_adopted_session_keeps_its_conversation_though_the_adopter_keeps_sessions_elsewhere(
    tmp_path: Path, model_url: str, redis_url: str, model_server: Any,
) -> None:
    """Each replica has its own sessions directory (r1/sessions, r2/sessions): the adopter's CLI runs
    in another working directory, and still resumes the conversation from Redis."""
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_LEASE_TTL_S=LEASE_S) as cluster, clients(cluster) as (one, two):
        created = await one.create(prompt="SCRIPT:hello turn-one")
        session_id, first_run = created["session"]["session_id"], created["run"]["run_id"]
        await poll_run(one, session_id, first_run, "completed")
        os.kill(cluster[0][0].pid, signal.SIGKILL)
        cluster[0][0].wait()
        model_server.requests.clear()
        two.session_id = session_id
        ack = await two.frame({"type": "query", "id": next_id("q"), "prompt": "SCRIPT:hello turn-two"})
        done = await poll_run(two, session_id, ack["result"]["query_id"], "completed")
        assert done["result"]["is_error"] is False and await owner(redis_url, session_id) == "r2"
        sent = [str(m) for r in model_server.requests for m in r.body.get("messages", [])]
        assert any("turn-two" in m for m in sent)
        assert any("turn-one" in m for m in sent), "the adopter's CLI did not see the earlier turn"


async def test_a_query_forwarded_to_a_replica_restarted_under_the_same_id_waits_for_the_adoption(
    tmp_path: Path, model_url: str, redis_url: str,
) -> None:
    """A supervisor restarts a killed replica under its id (docker compose does) before its leases
    run out: asked for a session it no longer runs, the new process answers `session_not_found`,
    which must not reach the client as if the session were gone: the query waits for the adoption."""
    lease = "6"  # long enough for the new process to be up while the dead one's lease still runs
    async with replicas(tmp_path, model_url, redis_url, AGENT_GATEWAY_LEASE_TTL_S=lease) as cluster, clients(cluster) as (one, two):
        session_id = (await one.create(prompt="SCRIPT:hello"))["session"]["session_id"]
        os.kill(cluster[0][0].pid, signal.SIGKILL)
        cluster[0][0].wait()
        (tmp_path / "r1b").mkdir()
        env = {"AGENT_GATEWAY_REDIS_URL": redis_url, "AGENT_GATEWAY_REPLICA_ID": "r1", "AGENT_GATEWAY_LEASE_TTL_S": lease}
        async with gateway_process(tmp_path / "r1b", model_url, **env):
            assert await owner(redis_url, session_id) == "r1"  # the dead process's lease still runs
            redis = aioredis.from_url(redis_url)
            try:
                assert await redis.exists(f"ag:{{{session_id}}}:owner")
            finally:
                await redis.aclose()
            two.session_id = session_id
            ack = await two.frame({"type": "query", "id": next_id("q"), "prompt": "SCRIPT:hello"})
            assert ack["type"] == "ack", ack
            done = await poll_run(two, session_id, ack["result"]["query_id"], "completed")
            assert done["result"]["is_error"] is False
