"""The SDK SessionStore on a real Redis: the SDK's own conformance suite, and what the gateway adds
(duplicate batches skipped, keys that expire, a closed session's conversations deleted at once)."""

import asyncio
import itertools
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from claude_agent_sdk.testing import run_session_store_conformance
from redis.asyncio import Redis

from gateway.config import Settings
from gateway.scripted_model.server import ScriptedModelServer
from gateway.store.conversations import RedisSessionStore
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.processes import cli_pids
from tests.support.redis_server import RedisServer

prefixes = (f"t{n}" for n in itertools.count())


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_passes_the_sdk_conformance_suite_with_every_optional_method(redis: Redis) -> None:
    made: list[RedisSessionStore] = []

    def make_store() -> RedisSessionStore:
        made.append(RedisSessionStore(redis, next(prefixes), ttl_s=60))  # a fresh key space per contract
        return made[-1]

    await run_session_store_conformance(make_store)  # skips none: every optional method is implemented
    assert len(made) >= 14


async def test_a_batch_sent_twice_lands_once(redis: Redis) -> None:
    """The SDK retries a failed append; one that failed after it landed must not duplicate entries."""
    store = RedisSessionStore(redis, "ag", ttl_s=60)
    key = {"project_key": "p", "session_id": "s"}
    batch = [{"type": "user", "uuid": "u1", "n": 1}, {"type": "assistant", "uuid": "u2", "n": 2}, {"type": "tag", "n": 3}]
    await store.append(key, batch)  # type: ignore[arg-type]
    await store.append(key, batch)  # type: ignore[arg-type]
    loaded = await store.load(key)  # type: ignore[arg-type]
    assert loaded == [*batch, batch[2]]  # entries without a uuid can't be told apart: appended again, as the SDK asks


async def test_every_key_of_a_conversation_expires_and_appends_refresh_it(redis: Redis) -> None:
    store = RedisSessionStore(redis, "ag", ttl_s=30)
    main = {"project_key": "p", "session_id": "s"}
    await store.append({**main, "subpath": "subagents/agent-1"}, [{"type": "x", "uuid": "a"}])  # type: ignore[typeddict-item]
    await store.append(main, [{"type": "x", "uuid": "b"}])  # type: ignore[arg-type]
    keys = sorted(k.decode() for k in await redis.keys("ag:cs:*"))
    assert keys == [
        "ag:cs:project:p:sessions", "ag:cs:project:p:summaries",
        "ag:cs:{s}:p:main", "ag:cs:{s}:p:main:ids", "ag:cs:{s}:p:sub:subagents/agent-1",
        "ag:cs:{s}:p:subids:subagents/agent-1", "ag:cs:{s}:p:subs",
    ]
    for key in keys:
        assert 25_000 < await redis.pttl(key) <= 30_000, key
    await redis.pexpire("ag:cs:{s}:p:sub:subagents/agent-1", 1000)
    await store.append(main, [{"type": "x", "uuid": "c"}])  # type: ignore[arg-type]
    assert await redis.pttl("ag:cs:{s}:p:sub:subagents/agent-1") > 25_000  # a main append keeps its subagents


async def test_delete_project_removes_every_conversation_of_a_closed_session(redis: Redis) -> None:
    store = RedisSessionStore(redis, "ag", ttl_s=60)
    for session_id in ("s1", "s2"):
        await store.append({"project_key": "p", "session_id": session_id}, [{"type": "x", "uuid": "a"}])  # type: ignore[arg-type]
        await store.append({"project_key": "p", "session_id": session_id, "subpath": "subagents/a"}, [{"type": "x"}])  # type: ignore[typeddict-item]
    await store.append({"project_key": "other", "session_id": "s1"}, [{"type": "x"}])  # type: ignore[arg-type]
    await store.delete_project("p")
    assert sorted(k.decode() for k in await redis.keys("ag:cs:*")) == [
        "ag:cs:project:other:sessions", "ag:cs:project:other:summaries", "ag:cs:{s1}:other:main",
    ]


# ---- through the gateway and the real CLI --------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, model_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, model_url, redis_url=redis_url)


async def test_a_cli_on_a_wiped_disk_resumes_the_conversation_from_redis(
    gateway: RunningGateway, alice: WsClient, model_server: ScriptedModelServer, redis: Redis
) -> None:
    """Twice: kill the CLI and delete every transcript it wrote locally; the next turn still carries
    every earlier one (the second time, from a CLI that itself resumed from Redis)."""
    session_id = (await open_session(alice))["session"]["session_id"]
    home = gateway.app.state.settings.sessions_dir / session_id / "home"
    workdir = gateway.app.state.settings.sessions_dir / session_id / "work"
    prompts = ["SCRIPT:hello turn-one", "SCRIPT:hello turn-two", "SCRIPT:hello turn-three"]
    for n, prompt in enumerate(prompts):
        model_server.requests.clear()
        ack = await query(alice, prompt)
        result = await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
        assert result["is_error"] is False
        sent = [str(m) for r in model_server.requests for m in r.body.get("messages", [])]
        for earlier in prompts[:n]:
            assert any(earlier in m for m in sent), f"turn {n + 1} lost {earlier!r}"
        if n == len(prompts) - 1:
            break
        assert await redis.keys("ag:cs:{*}:*:main"), "nothing mirrored"
        [pid] = cli_pids(workdir)
        os.kill(pid, signal.SIGKILL)
        await alice.event("error", lambda e: e["code"] == "agent_exited")
        shutil.rmtree(home / ".claude" / "projects", ignore_errors=True)
        assert not list(home.rglob("*.jsonl"))


async def test_a_fork_of_a_conversation_resumed_from_redis_has_every_turn(
    gateway: RunningGateway, alice: WsClient, model_server: ScriptedModelServer
) -> None:
    """A CLI resumed from Redis (after a crash, a wake, an adoption) writes its turns there only, not
    to the session's config directory: a fork copies the conversation from Redis."""
    session_id = (await open_session(alice))["session"]["session_id"]
    workdir = gateway.app.state.settings.sessions_dir / session_id / "work"
    for n, prompt in enumerate(["SCRIPT:hello turn-one", "SCRIPT:hello turn-two"]):
        ack = await query(alice, prompt)
        assert (await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60))["is_error"] is False
        if n == 0:  # the next CLI resumes from Redis
            [pid] = cli_pids(workdir)
            os.kill(pid, signal.SIGKILL)
            await alice.event("error", lambda e: e["code"] == "agent_exited")
    forked = await alice.request({"type": "fork"})
    assert forked["type"] == "ack", forked
    tab = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    try:
        await tab.request({"type": "attach", "session_id": forked["result"]["session_id"]})
        model_server.requests.clear()
        ack = await query(tab, "SCRIPT:hello turn-fork")
        assert (await tab.event("result", lambda e: e["query_id"] == ack["id"], timeout=60))["is_error"] is False
        sent = [str(m) for r in model_server.requests for m in r.body.get("messages", [])]
        assert any("turn-one" in m for m in sent) and any("turn-two" in m for m in sent)
    finally:
        await tab.close()


async def test_a_closed_sessions_conversation_leaves_redis(gateway: RunningGateway, alice: WsClient, redis: Redis) -> None:
    await open_session(alice)
    ack = await query(alice, "SCRIPT:hello")
    await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
    assert await redis.keys("ag:cs:*")
    await alice.request({"type": "close"})
    await alice.state("closed")
    async with asyncio.timeout(10):
        while await redis.keys("ag:cs:*"):
            await asyncio.sleep(0.05)


async def test_a_cli_started_while_redis_is_frozen_fails_fast_and_the_next_query_resumes(
    tmp_path: Path, model_url: str, model_server: ScriptedModelServer
) -> None:
    """A new CLI reads its conversation from Redis before it starts: with Redis frozen that read fails
    within `redis_timeout_s` (the query ends `agent_unavailable`, nothing hangs; the client is given
    the ack and the events once Redis holds them), and once Redis is back the next query resumes the
    whole conversation."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        async with run_gateway(make_settings(tmp_path, model_url, redis_url=server.url, redis_timeout_s=0.5)) as gw:
            alice = await WsClient.connect(gw.ws_url, TOKENS["alice"])
            session_id = (await open_session(alice))["session"]["session_id"]
            first = await query(alice, "SCRIPT:hello turn-one")
            await alice.event("result", lambda e: e["query_id"] == first["id"], timeout=60)
            [pid] = cli_pids(gw.app.state.settings.sessions_dir / session_id / "work")
            os.kill(pid, signal.SIGKILL)
            await alice.event("error", lambda e: e["code"] == "agent_exited")
            server.pause()
            try:
                sent_ms = time.time() * 1000
                await alice.send({"type": "query", "id": "q-frozen", "prompt": "SCRIPT:hello turn-two"})
                await asyncio.sleep(3)  # the CLI's start fails meanwhile (its events wait for Redis)
            finally:
                resumed_ms = time.time() * 1000
                server.resume()
            result = await alice.event("result", lambda e: e["query_id"] == "q-frozen", timeout=30)
            assert result["subtype"] == "agent_unavailable", result
            [emitted] = [f["ts"] for f in alice.events if f["event"]["kind"] == "result" and f["event"]["query_id"] == "q-frozen"]
            assert sent_ms < emitted < resumed_ms  # it failed fast: while Redis was still frozen (3 s)
            model_server.requests.clear()
            again = await query(alice, "SCRIPT:hello turn-three")
            assert (await alice.event("result", lambda e: e["query_id"] == again["id"], timeout=60))["is_error"] is False
            assert any("turn-one" in str(m) for r in model_server.requests for m in r.body.get("messages", []))
            await alice.close()
    finally:
        server.stop()
