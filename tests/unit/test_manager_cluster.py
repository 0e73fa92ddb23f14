"""The session manager with fake runners (exact timing, no CLI processes), mostly as two replicas on a
real Redis: what a Redis error, a stale owner or a close racing a handover leaves behind; and its reaper."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import project_key_for_directory
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.cluster import keys
from gateway.cluster.ownership import Orphan
from gateway.cluster.rpc import Request
from gateway.config import Settings
from gateway.profiles import DEMO_PROFILE
from gateway.sessions.manager import SessionManager
from gateway.sessions.session import Session
from gateway.cluster.remote import RemoteSession
from gateway.wire.client import Close, Open
from gateway.wire.events import Actor
from gateway.wire.errors import ErrorCode, GatewayError
from tests.support import gateway as gw
from tests.unit.test_session_races import Fleet, settle


def replica_settings(tmp_path: Path, redis_url: str, name: str, **overrides: Any) -> Settings:
    return gw.test_settings(tmp_path / name, "http://model.invalid", redis_url=redis_url, replica_id=name, **overrides)


@contextlib.asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[tuple[SessionManager, Fleet]]:
    fleet = Fleet()
    manager = SessionManager(settings, {"default": DEMO_PROFILE}, fleet)
    await manager.start()
    try:
        yield manager, fleet
    finally:
        await manager.shutdown()


@pytest.fixture
async def a(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[SessionManager, Fleet]]:
    async with replica(replica_settings(tmp_path, redis_url, "ra")) as found:
        yield found


async def opened(manager: SessionManager, frame_id: str = "o1") -> Session:
    session = await manager.open("alice", Open(id=frame_id))
    assert isinstance(session, Session)
    await settle()
    return session


async def meta(manager: SessionManager, session_id: str, field: str) -> bytes | None:
    assert manager.cluster is not None
    return await manager.cluster.redis.hget(keys.SessionKeys.of(manager.settings.redis_key_prefix, session_id).meta, field)


async def lease(manager: SessionManager, session_id: str) -> bytes | None:
    assert manager.cluster is not None
    return await manager.cluster.redis.get(keys.SessionKeys.of(manager.settings.redis_key_prefix, session_id).owner)


def failing_once(real: Any) -> Any:
    calls = 0

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("Redis went away")
        return await real(*args, **kwargs)

    return call


async def test_a_redis_error_marking_a_session_closed_still_releases_it_and_the_reaper_retries(
    a: tuple[SessionManager, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, fleet = a
    assert manager.cluster is not None
    session = await opened(manager)
    registry = manager.cluster.registry
    failing = failing_once(registry.closed)

    async def closed(info: Any) -> None:
        registry.forget(info.session_id)  # the description queued before is dropped, then the write fails
        await failing(info)

    monkeypatch.setattr(registry, "closed", closed)
    await manager.close(session, "closed by client")
    assert not fleet.current.alive
    assert not manager.cluster.ownership.holds(session.id) and await lease(manager, session.id) is None  # not renewed forever
    meta_key = keys.SessionKeys.of(manager.settings.redis_key_prefix, session.id).meta
    assert await manager.cluster.redis.ttl(meta_key) > manager.settings.closed_retention_s  # not final yet
    await manager.reap()  # the next pass records it
    assert await meta(manager, session.id, "state") == b"closed"
    assert await manager.cluster.redis.ttl(meta_key) <= manager.settings.closed_retention_s
    assert await manager.cluster.registry.live_count("alice") == 0


async def test_the_reaper_survives_a_failing_pass_and_shutdown_drains(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replica_settings(tmp_path, redis_url, "ra", idle_timeout_s=0.2)  # a pass every 0.05 s
    async with replica(settings) as (manager, fleet):
        assert manager.cluster is not None
        session = await opened(manager)
        monkeypatch.setattr(manager.cluster, "watched", failing_once(manager.cluster.watched))
        await settle(0.5)
        assert manager._reaper is not None and not manager._reaper.done()
        assert session.closed  # a later pass reaped it
    assert not fleet.current.alive


async def test_a_session_that_fails_to_register_leaves_no_lease(a: tuple[SessionManager, Fleet], monkeypatch: pytest.MonkeyPatch) -> None:
    manager, fleet = a
    assert manager.cluster is not None
    claimed: list[str] = []
    claim = manager.cluster.ownership.claim

    async def claiming(session_id: str) -> int:
        claimed.append(session_id)
        return await claim(session_id)

    monkeypatch.setattr(manager.cluster.ownership, "claim", claiming)
    monkeypatch.setattr(manager.cluster.registry, "register", failing_once(manager.cluster.registry.register))
    with pytest.raises(RedisConnectionError):
        await manager.open("alice", Open(id="o1"))
    [session_id] = claimed
    assert not manager.cluster.ownership.holds(session_id) and await lease(manager, session_id) is None
    assert await manager.cluster.redis.zscore(keys.leases(manager.settings.redis_key_prefix), session_id) is None
    assert fleet.runners == [] and manager.live_count() == 0
    # A request forwarded for it is answered, not polled for forever.
    request = Request(id="x", sender="rb", sid=session_id, op="snapshot")
    with pytest.raises(GatewayError) as missing:
        async with asyncio.timeout(2):
            await manager.cluster._serve(request)
    assert missing.value.code == ErrorCode.SESSION_NOT_FOUND


async def test_a_fork_that_cannot_copy_its_transcript_leaves_no_session(a: tuple[SessionManager, Fleet]) -> None:
    manager, fleet = a
    assert manager.cluster is not None
    source = await opened(manager)
    source.claude_session_id = "cs"  # as if a turn ran: there is a conversation to copy, yet no file of it
    with pytest.raises(GatewayError):
        await manager.fork(source, None)
    forks = [s for s in manager._sessions.values() if s is not source]
    assert all(s.closed for s in forks)
    assert [e.info.session_id for e in await manager.cluster.registry.list_for("alice") if not e.closed] == [source.id]
    assert set(manager.cluster.ownership._held) == {source.id}


async def test_a_replica_that_lost_a_session_cannot_close_it_for_the_next_owner(tmp_path: Path, redis_url: str) -> None:
    """Replica A pauses past its lease and B adopts the session; a close A runs before it notices
    (a DELETE, the reaper) ends only A's copy: B's session stays live, its conversation kept."""
    shared = tmp_path / "sessions"  # the replicas' sessions directories have the same path: the same conversation keys
    async with replica(replica_settings(tmp_path, redis_url, "ra", sessions_dir=shared)) as (a, _), \
            replica(replica_settings(tmp_path, redis_url, "rb", sessions_dir=shared)) as (b, b_fleet):
        assert a.cluster is not None and b.cluster is not None and a._conversations is not None
        stale = await opened(a)
        project_key = project_key_for_directory(shared.resolve() / stale.id / "work")
        await a._conversations.append({"project_key": project_key, "session_id": "cs"}, [{"type": "user", "uuid": "u1"}])
        await a.cluster.redis.delete(keys.SessionKeys.of(a.settings.redis_key_prefix, stale.id).owner)  # A's lease ran out
        fence = await b.cluster.ownership.adopt(stale.id)
        assert fence is not None
        await b.adopt(Orphan(stale.id, 0), fence)
        await settle()
        assert a.cluster.ownership.holds(stale.id)  # A hasn't noticed
        await a.close(stale, "closed by client")
        await a.cluster.writer.flush()
        entry = await b.cluster.registry.lookup(stale.id)
        assert entry is not None and entry.owner == "rb" and not entry.closed
        assert await meta(b, stale.id, "state") != b"closed"
        assert await lease(b, stale.id) is not None
        assert await a._conversations.load({"project_key": project_key, "session_id": "cs"})
        running = b.owned(stale.id)
        assert running is not None and not running.closed and b_fleet.current.alive


class Ending:
    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def push(self, frame: bytes) -> None: ...

    def end(self) -> None:
        self.ended.set()


@pytest.mark.parametrize("closed_by", ["a tab on the owner", "this tab"])
async def test_a_session_followed_from_another_replica_is_seen_closed_when_its_log_ends(tmp_path: Path, redis_url: str, closed_by: str) -> None:
    """The transports close a client whose events ended 4009 if its session closed, else 1012 (resume elsewhere)."""
    async with replica(replica_settings(tmp_path, redis_url, "ra")) as (a, _), replica(replica_settings(tmp_path, redis_url, "rb")) as (b, _):
        session = await opened(a)
        remote = await b.get("alice", session.id)
        assert isinstance(remote, RemoteSession)
        sink = Ending()
        await remote.attach(sink, "at1", "c2", session.last_seq, session.epoch)
        if closed_by == "this tab":
            await remote.execute(Close(id="c1"), Actor(principal="alice", connection="c2"))
        else:
            await a.close(session, "closed by client")
        async with asyncio.timeout(5):
            await sink.ended.wait()
        assert remote.closed
        remote.detach(sink)


async def test_closing_idle_sessions_another_replica_runs_waits_without_spinning(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with replica(replica_settings(tmp_path, redis_url, "ra")) as (a, _), replica(replica_settings(tmp_path, redis_url, "rb")) as (b, _):
        session = await opened(a)
        close = a.close

        async def slow_close(handle: Any, reason: str) -> None:  # the owner takes a while to answer
            await asyncio.sleep(0.3)
            await close(handle, reason)

        monkeypatch.setattr(a, "close", slow_close)
        sleep, turns = asyncio.sleep, 0

        async def counting(delay: float, *args: Any) -> Any:
            nonlocal turns
            turns += delay == 0
            return await sleep(delay, *args)

        monkeypatch.setattr(asyncio, "sleep", counting)
        assert await b.close_idle("alice", 0) == [session.id]
        monkeypatch.setattr(asyncio, "sleep", sleep)
        assert session.closed and turns < 20


async def test_the_reaper_applies_age_retention_to_quiet_logs(tmp_path: Path) -> None:
    settings = gw.test_settings(tmp_path, "http://model.invalid", log_max_age_s=0.2)  # in memory
    manager = SessionManager(settings, {"default": DEMO_PROFILE}, Fleet())
    try:
        session = await opened(manager)
        assert session.feed.log.first_seq == 1 and session.last_seq > 1
        await settle(0.3)
        await manager.reap()
        assert session.feed.log.first_seq == session.last_seq  # the newest is always kept
    finally:
        await manager.shutdown()
