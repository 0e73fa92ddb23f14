"""Chaos: the owner of busy sessions SIGKILLed five times in one run, under load, through the shipped
nginx.conf. Three replicas share one redis-server; 100 clients (WebSocket and SSE, each reconnecting
through nginx with resume whenever its connection ends) follow 20 sessions whose drivers chat without
pause, one turn in three waiting on a tool approval. Each round kills the replica running the most
busy sessions, then starts it again on its port (same replica id, as a supervisor restarts it).

Afterwards: every client holds what the session's Redis log holds, every event once and in order
(after an explicit reset, from the reset's position on); every query ended with exactly one `result`
(`owner_lost` only for one a kill cut); every session a kill orphaned was adopted (`agent_recovered`)
and every session answers its next query; nothing a killed replica started is left running. The
figures (owner death → adoption, death → each affected client live again) are printed for
docs/DEPLOY.md ("Failover figures").
"""

import asyncio
import contextlib
import itertools
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed, WebSocketException

from tests.integration.test_failover import logged, logged_when
from tests.support.client import WsClient
from tests.support.cluster import Cluster, Replica, find_nginx, run_cluster
from tests.support.gateway import TOKENS
from tests.support.http import ApiClient, SseStream, next_id
from tests.support.processes import descendants, session_processes, survivors

Frame = dict[str, Any]
SESSIONS, WS_PER_SESSION, SSE_PER_SESSION, KILLS = 20, 3, 2, 5  # 20 x (3 + 2) = 100 clients
LEASE_S = 4.0
# A turn streams for about 2.4 s in a few deltas: sessions are busy most of the time, yet the CPU
# (two cores in CI, for 20 CLIs, three gateways, nginx and 100 clients) is not saturated.
TEXT = 'SCRIPT:{"steps": [[{"text": "' + "word " * 12 + '"}]], "chunk": 10, "delay_ms": 400}'
PAUSE_S = 0.5  # between a result and the next query
APPROVAL = "SCRIPT:bash"  # a Bash call that waits for a permission_response
BACKOFF_S, MAX_BACKOFF_S = 0.1, 1.0  # a client's wait before reconnecting, doubled after each failure
RETRY = (OSError, ConnectionClosed, WebSocketException, httpx.HTTPError, StopAsyncIteration, TimeoutError)


class Lost(Exception):
    """The client's connection ended before the reply came."""


class Tab:
    """One client of a session through nginx, over WebSocket or SSE, that reconnects with resume
    (attach `after` / `Last-Event-ID`) whenever its connection ends. Its transport client checks
    every event on arrival (contiguous, no duplicate); it keeps each arrival time and every reset."""

    def __init__(self, cluster: Cluster, session_id: str, transport: str) -> None:
        self.cluster, self.session_id, self.transport = cluster, session_id, transport
        self.api = ApiClient(cluster.url)  # the SSE cursor and events (also the WebSocket tab's HTTP)
        self.api.session_id = session_id
        self.ws: WsClient | None = None
        self.arrivals: list[float] = []
        self.resets: list[tuple[int, int, str]] = []  # (events held before it, the snapshot's position, why)
        self.refused = 0  # attaches answered owner_unreachable
        self.replica = ""  # the replica the current connection landed on
        self.connections = 0
        self.replies: dict[str, asyncio.Future[Frame]] = {}
        self.on_event: Callable[[Frame], None] = lambda frame: None
        self.on_connect: Callable[[], None] = lambda: None

    @property
    def events(self) -> list[Frame]:
        return self.ws.events if self.ws is not None else self.api.events

    @property
    def last_seq(self) -> int:
        return self.ws.last_seq if self.ws is not None else self.api.last_seq

    async def run(self) -> None:
        """Follow the session until cancelled, reconnecting on every close, error or cut."""
        backoff = BACKOFF_S
        while True:
            connections = self.connections
            try:
                if self.transport == "ws":
                    await self._follow_ws()
                else:
                    await self._follow_sse()
            except RETRY:
                pass
            for waiting in self.replies.values():
                if not waiting.done():
                    waiting.set_exception(Lost())
            self.replies.clear()
            backoff = BACKOFF_S if self.connections > connections else min(backoff * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff * random.uniform(0.5, 1))  # as browsers do: no reconnect storm

    def _got(self, frame: Frame) -> None:
        if frame["type"] == "event":
            self.arrivals.append(time.monotonic())
            self.on_event(frame)
        elif frame["type"] == "reset":
            self.resets.append((len(self.events), frame["snapshot"]["session"]["last_seq"], frame["reason"]))
            for event in frame["snapshot"]["transcript"]:  # what the reset skipped, as a client renders it
                self.on_event({"type": "event", "event": event})
        waiting = self.replies.get(frame.get("id") or "")
        if waiting is not None and not waiting.done() and frame["type"] != "event":
            waiting.set_result(frame)

    async def _follow_ws(self) -> None:
        tab = await WsClient.connect(self.cluster.ws_url, TOKENS["alice"])
        try:
            if self.ws is not None:
                tab.resume_from(self.ws)
                tab.events = self.ws.events
            self.ws, self.replica = tab, tab.ws.response.headers["x-replica"]  # type: ignore[union-attr]
            self.connections += 1
            attach = {"type": "attach", "id": next_id("a"), "session_id": self.session_id, "after": tab.last_seq}
            if tab.epoch is not None:
                attach["epoch"] = tab.epoch
            await tab.send(attach)
            while True:
                frame = await tab.recv(timeout=3600)
                if frame.get("id") == attach["id"]:
                    if frame["type"] == "error":  # a reset needs the owner's snapshot: none while it has no owner
                        assert frame["code"] == "owner_unreachable", frame
                        self.refused += 1
                        return
                    assert frame["type"] in ("attached", "reset"), frame
                    self.on_connect()
                self._got(frame)
        finally:
            with contextlib.suppress(*RETRY):
                await tab.close()

    async def _follow_sse(self) -> None:
        headers = {"Last-Event-ID": self.api.cursor} if self.api.epoch is not None else {}
        request = self.api.http.build_request("GET", f"/v1/sessions/{self.session_id}/events", headers=headers)
        response = await self.api.http.send(request, stream=True)
        try:
            if response.status_code != 200:  # e.g. 502 while nginx finds the replica gone
                return
            self.replica = response.headers["x-replica"]
            self.connections += 1
            stream = SseStream(response, self.api)
            while True:
                self._got(await stream.recv(timeout=3600))
        finally:
            await response.aclose()

    async def request(self, frame: Frame, timeout: float = 30) -> Frame:
        """Send a frame on the current WebSocket; its reply (`Lost` if the connection ends first)."""
        if self.ws is None:
            raise Lost()
        waiting = self.replies[frame["id"]] = asyncio.get_running_loop().create_future()
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # a `Lost` nobody awaits any more is no news
        await self.ws.send(frame)
        return await asyncio.wait_for(waiting, timeout)


class Driver:
    """The session's chatting user, on its first WebSocket tab: a query at a time (one in three
    needs a tool approval, which it gives), each sent again under its id until acked, then waited
    for until its `result` arrives."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        self.asked: list[str] = []
        self.results: dict[str, list[str]] = {}  # query id -> subtypes of its results
        self.pending: set[str] = set()  # approvals asked for and not resolved
        self.answered = 0
        self.acks: dict[str, Frame] = {}
        self.stuck: list[str] = []  # acked queries whose `result` this client never received
        self._ended = asyncio.Event()
        self._answering: set[asyncio.Task[None]] = set()
        tab.on_event, tab.on_connect = self._event, self._connected

    def _event(self, frame: Frame) -> None:
        """An event received, or one of a reset's snapshot (which may repeat one received)."""
        event = frame["event"]
        if event["kind"] == "result" and event.get("query_id"):
            self.results.setdefault(event["query_id"], []).append(event["subtype"])
            self._ended.set()
        elif event["kind"] == "permission_request":
            self.pending.add(event["request_id"])
            self._answer(event["request_id"])
        elif event["kind"] == "request_resolved":
            self.pending.discard(event["request_id"])

    def _connected(self) -> None:
        for request_id in self.pending:  # an answer sent on the lost connection may not have arrived
            self._answer(request_id)

    def _answer(self, request_id: str) -> None:
        frame = {"type": "permission_response", "id": next_id("p"), "request_id": request_id, "decision": "allow"}
        task = asyncio.create_task(self._send_answer(frame))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _send_answer(self, frame: Frame) -> None:
        with contextlib.suppress(Lost, *RETRY):
            if (await self.tab.request(frame))["type"] == "ack":
                self.answered += 1

    async def ask(self, prompt: str) -> str:
        query_id = next_id("q")
        self.asked.append(query_id)
        frame = {"type": "query", "id": query_id, "prompt": prompt}
        try:
            await self._until_ended(query_id, frame)
        except TimeoutError:  # judged at the end, against the log (a spinner that never stops)
            assert query_id in self.acks, f"{query_id} on {self.tab.session_id} was never acked"
            self.stuck.append(query_id)
            return "stuck"
        return self.results[query_id][0]

    async def _until_ended(self, query_id: str, frame: Frame) -> None:
        async with asyncio.timeout(30):
            while True:
                try:
                    reply = await self.tab.request(dict(frame))
                except (Lost, *RETRY):
                    await asyncio.sleep(0.1)
                    continue
                if reply["type"] == "ack":
                    self.acks[query_id] = reply
                    break
                assert reply["code"] in ("owner_unreachable", "agent_unavailable"), reply  # while it has no owner
                await asyncio.sleep(0.2)
            while query_id not in self.results:
                self._ended.clear()
                await self._ended.wait()

    async def chat(self, stop: asyncio.Event) -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            await self.ask(APPROVAL if turn % 3 == 1 else TEXT)
            await asyncio.sleep(PAUSE_S)


def failed(tasks: list[asyncio.Task[None]]) -> None:
    """Raise the first failure among tasks that must run until cancelled or told to stop."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@pytest.fixture
async def cluster(tmp_path: Path, model_url: str) -> AsyncIterator[Cluster]:
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed and could not be installed (scripts/system-deps.sh test)")
    env = {
        "AGENT_GATEWAY_LEASE_TTL_S": str(LEASE_S), "AGENT_GATEWAY_POOL_SIZE": "0",
        "AGENT_GATEWAY_MAX_SESSIONS_PER_PRINCIPAL": str(SESSIONS), "AGENT_GATEWAY_FORWARD_TIMEOUT_S": "5",
        "AGENT_GATEWAY_DRAIN_GRACE_S": "1",  # the teardown's SIGTERM need not let turns finish
    }
    async with run_cluster(tmp_path, model_url, nginx, replicas=3, **env) as running:
        yield running


async def owners(redis: aioredis.Redis, session_ids: list[str]) -> dict[str, tuple[str, str, int]]:
    """Each session's (owner, state, fence) as its meta hash says."""
    async with redis.pipeline(transaction=False) as pipe:
        for sid in session_ids:
            pipe.hmget(f"ag:{{{sid}}}:meta", ("owner", "state", "fence"))
        rows = await pipe.execute()
    return {sid: ((o or b"").decode(), (s or b"").decode(), int(f or 0)) for sid, (o, s, f) in zip(session_ids, rows)}


async def test_owners_of_busy_sessions_killed_five_times_lose_nothing_any_client_saw(cluster: Cluster, tmp_path: Path) -> None:
    redis = aioredis.from_url(cluster.redis.url)
    opener = ApiClient(cluster.url)
    tabs: list[Tab] = []
    following: list[asyncio.Task[None]] = []
    chatting: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        created = await asyncio.gather(*(opener.http.post("/v1/sessions", json={}) for _ in range(SESSIONS)))
        assert all(r.status_code == 201 for r in created), [r.text for r in created if r.status_code != 201]
        session_ids = [r.json()["session"]["session_id"] for r in created]
        drivers: dict[str, Driver] = {}
        for sid in session_ids:
            group = [Tab(cluster, sid, "ws") for _ in range(WS_PER_SESSION)] + [Tab(cluster, sid, "sse") for _ in range(SSE_PER_SESSION)]
            drivers[sid] = Driver(group[0])
            tabs += group
        following = [asyncio.create_task(tab.run()) for tab in tabs]
        chatting = [asyncio.create_task(driver.chat(stop)) for driver in drivers.values()]
        started = time.monotonic()

        adoption_s: list[float] = []  # owner death -> the adopter's claim in Redis, per orphaned session
        ownerless_ms: list[int] = []  # what agent_recovered says (from the last renewal)
        live_again_s: list[float] = []  # owner death -> first new event, per affected client
        kills: list[tuple[str, int, int]] = []  # (victim, sessions it ran, busy ones among them)
        for _ in range(KILLS):
            await asyncio.sleep(1.5)  # turns under way again everywhere
            failed(chatting + following)
            state = await owners(redis, session_ids)
            busy = {r.replica_id: [s for s, (o, st, _) in state.items() if o == r.replica_id and st in ("running", "awaiting_approval")] for r in cluster.replicas}
            victim: Replica = cluster.replica(max(busy, key=lambda r: len(busy[r])))
            orphaned = [s for s, (o, _, _) in state.items() if o == victim.replica_id]
            assert victim.proc is not None
            left_behind = list(descendants(victim.proc.pid))  # its CLIs, their children, its watchdog
            cursors = {id(tab): (tab.last_seq, len(tab.arrivals)) for tab in tabs}
            affected = [t for t in tabs if t.session_id in orphaned or t.replica == victim.replica_id]
            killed_at, killed_ms = time.monotonic(), time.time() * 1000
            victim.signal(signal.SIGKILL)
            await victim.wait()
            kills.append((victim.replica_id, len(orphaned), len(busy[victim.replica_id])))
            print(f"{time.monotonic() - started:5.1f} s: killed {kills[-1]}", flush=True)
            restart = asyncio.create_task(victim.start())  # on its port, under its id
            fences = {s: state[s][2] for s in orphaned}
            waiting = set(orphaned)
            async with asyncio.timeout(30):
                while waiting:
                    now = await owners(redis, list(waiting))
                    for sid, (_, _, fence) in now.items():
                        if fence > fences[sid]:  # the adopt script raised it
                            adoption_s.append(time.monotonic() - killed_at)
                            waiting.discard(sid)
                    await asyncio.sleep(0.02)
            print(f"{time.monotonic() - started:5.1f} s: adopted", flush=True)
            await restart
            print(f"{time.monotonic() - started:5.1f} s: restarted", flush=True)
            assert await survivors(left_behind, within_s=10) == [], "a killed replica's processes outlived it"
            try:
                async with asyncio.timeout(30):  # every affected client gets going again
                    while any(len(t.arrivals) == cursors[id(t)][1] for t in affected):
                        failed(chatting + following)
                        await asyncio.sleep(0.05)
            except TimeoutError:
                stuck = [t for t in affected if len(t.arrivals) == cursors[id(t)][1]]
                details = [
                    (t.transport, t.session_id, t.replica, t.connections, t.refused, t.last_seq, (await logged(cluster.redis.url, t.session_id))[-1]["seq"])
                    for t in stuck
                ]
                raise AssertionError(f"clients not live again (transport, session, replica, connections, refused, seq, logged): {details}") from None
            print(f"{time.monotonic() - started:5.1f} s: live again", flush=True)
            for tab in affected:
                live_again_s.append(tab.arrivals[cursors[id(tab)][1]] - killed_at)
            for sid in orphaned:  # each says so in its log (written moments after the claim)
                recovered = await logged_when(cluster.redis.url, sid, lambda frames: any(
                    f["event"]["kind"] == "agent_recovered" and f["ts"] >= killed_ms for f in frames
                ), within_s=15)
                [event] = [f["event"] for f in recovered if f["event"]["kind"] == "agent_recovered" and f["ts"] >= killed_ms][:1]
                assert event["reason"] == "owner_lost"
                ownerless_ms.append(event["ownerless_ms"])

        print(
            f"\nchaos: {len(tabs)} clients ({SESSIONS * WS_PER_SESSION} WS, {SESSIONS * SSE_PER_SESSION} SSE) on {SESSIONS} sessions, "
            f"{len(kills)} SIGKILLs (victim, sessions, busy): {kills} in {time.monotonic() - started:.1f} s; lease {LEASE_S} s\n"
            f"  owner death -> adoption: p50 {pct(adoption_s, 50):.2f} s, p99 {pct(adoption_s, 99):.2f} s (n={len(adoption_s)}); "
            f"agent_recovered.ownerless_ms p50 {pct(ownerless_ms, 50):.0f}, p99 {pct(ownerless_ms, 99):.0f}\n"
            f"  owner death -> client live again: p50 {pct(live_again_s, 50):.2f} s, p99 {pct(live_again_s, 99):.2f} s (n={len(live_again_s)})",
            flush=True,
        )
        stop.set()
        async with asyncio.timeout(90):
            await asyncio.gather(*chatting)
        final = await asyncio.gather(*(driver.ask(TEXT) for driver in drivers.values()))  # each session's next query
        assert final == ["success"] * SESSIONS
        chaos_s = time.monotonic() - started

        logs = {sid: await logged(cluster.redis.url, sid) for sid in session_ids}
        async with asyncio.timeout(30):  # every client catches up with the log
            while any(tab.last_seq < logs[tab.session_id][-1]["seq"] for tab in tabs):
                await asyncio.sleep(0.05)
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
        failed(following)  # a contiguity or duplicate check that failed on arrival

        lost = diverged = resets = 0
        wrong: list[str] = []  # clients holding other than the log
        for tab in tabs:
            log = [{k: v for k, v in f.items() if k != "_seen"} for f in logs[tab.session_id]]
            held = [{k: v for k, v in f.items() if k != "_seen"} for f in tab.events]
            start, position, _ = tab.resets[-1] if tab.resets else (0, 0, "")
            resets += len(tab.resets)
            expected = [f for f in log if f["seq"] > position]
            lost += len({f["seq"] for f in expected} - {f["seq"] for f in held[start:]})
            diverged += sum(a != b for a, b in zip(held[start:], expected))
            if held[start:] != expected:
                first = next((a, b) for a, b in itertools.zip_longest(held[start:], expected) if a != b)
                wrong.append(f"{tab.transport} client of {tab.session_id}: first difference (held, logged) {first}")
        ended = {sid: [(e["query_id"], e["subtype"]) for e in (f["event"] for f in logs[sid]) if e["kind"] == "result"] for sid in session_ids}
        approvals = sum(d.answered for d in drivers.values())
        stuck = [(sid, q) for sid, d in drivers.items() for q in d.stuck]
        print(
            f"  {chaos_s:.1f} s in all; events lost {lost}, diverged {diverged}, resets {resets} {sorted(r[2] for t in tabs for r in t.resets)}; "
            f"queries {sum(map(len, ended.values()))} (owner_lost {sum(s == 'owner_lost' for e in ended.values() for _, s in e)}); "
            f"approvals given {approvals}; results never received {stuck}; reconnects {sum(t.connections - 1 for t in tabs)}, attaches refused {sum(t.refused for t in tabs)}",
            *wrong[:5], sep="\n",
        )
        assert lost == 0
        for sid, driver in drivers.items():
            assert sorted(q for q, _ in ended[sid]) == sorted(driver.asked), "a query without exactly one result"
            assert {subtype for _, subtype in ended[sid]} <= {"success", "owner_lost"}, ended[sid]
            events = [f["event"] for f in logs[sid]]
            asked = {e["request_id"] for e in events if e["kind"] == "permission_request"}
            resolved = {e["request_id"]: e["outcome"] for e in events if e["kind"] == "request_resolved"}
            assert asked == set(resolved) and set(resolved.values()) <= {"allowed", "expired"}, resolved
        assert approvals > 0
        assert len(adoption_s) == sum(n for _, n, _ in kills) and all(busy for _, _, busy in kills)
        assert not stuck, f"queries whose result never reached the client: {stuck}"
        assert not wrong and diverged == 0
    finally:
        stop.set()
        for task in following + chatting:
            task.cancel()
        await asyncio.gather(*following, *chatting, return_exceptions=True)
        for tab in tabs:
            if tab.ws is not None:
                tab.ws.abort()  # a close handshake with a replica that is gone would wait for it
            await tab.api.close()
        await opener.close()
        await redis.aclose()
    await cluster.stop()
    for replica in cluster.replicas:  # nothing any replica started is left, once they are all gone
        assert session_processes(replica.directory / "sessions") == []
