"""The registry against a real Redis: listing, counting, coalesced updates, the log's position winning."""

import pytest

from gateway.cluster import keys
from gateway.cluster.registry import Registry
from gateway.cluster.writer import PipelineWriter
from gateway.config import Settings
from gateway.sessions.manager import session_limits
from gateway.store.redis import connect
from gateway.wire.server import SessionInfo
from tests.support import gateway as gw


@pytest.fixture
async def redis(tmp_path, redis_url):  # type: ignore[no-untyped-def]
    client = connect(gw.test_settings(tmp_path, "http://x", redis_url=redis_url))
    yield client
    await client.aclose()


def info(session_id: str, state: str = "idle", last_seq: int = 1, created_at: int = 1000) -> SessionInfo:
    return SessionInfo(
        session_id=session_id, profile="default", model="m", permission_mode="default", state=state,  # type: ignore[arg-type]
        epoch="e1", last_seq=last_seq, created_at=created_at, last_activity=created_at, turns=0, total_cost_usd=0.0,
        queued=0, pending=[], allowed_models=["m"], allowed_modes=["default"], limits=session_limits(Settings()),
    )


async def test_sessions_are_listed_per_principal_in_creation_order_and_counted_while_live(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    registry = Registry(redis, PipelineWriter(redis), gw.test_settings(tmp_path, "http://x", redis_url=redis_url), "r2")
    await registry.register("alice", "r1", info("s2", created_at=2000), b"{}")
    await registry.register("alice", "r2", info("s1", created_at=1000), b"{}")
    await registry.register("bob", "r1", info("s3"), b"{}")
    assert [e.info.session_id for e in await registry.list_for("alice")] == ["s1", "s2"]
    entry = await registry.lookup("s2")
    assert entry is not None and (entry.principal, entry.owner) == ("alice", "r1")
    assert not await registry.closed(info("s2", state="closed"))  # r1's: r2 no longer owns it
    assert (await registry.lookup("s2")).info.state == "idle"  # type: ignore[union-attr]
    assert await registry.closed(info("s1", state="closed"))
    assert await registry.live_count("alice") == 1
    assert 0 < await redis.ttl(keys.SessionKeys.of("ag", "s1").meta) <= 300
    assert await registry.lookup("nope") is None


async def test_updates_are_coalesced_and_a_close_is_final(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    writer = PipelineWriter(redis)
    registry = Registry(redis, writer, gw.test_settings(tmp_path, "http://x", redis_url=redis_url), "r1")
    await registry.register("alice", "r1", info("s1"), b"{}")
    calls: list[str] = []

    def describe(state: str):  # type: ignore[no-untyped-def]
        calls.append(state)
        return info("s1", state=state)

    registry.changed("s1", lambda: describe("running"), lambda: None)
    registry.changed("s1", lambda: describe("awaiting_approval"), lambda: None)
    await writer.flush()
    assert calls == ["awaiting_approval"]
    assert (await registry.lookup("s1")).info.state == "awaiting_approval"  # type: ignore[union-attr]
    registry.changed("s1", lambda: describe("idle"), lambda: None)
    await registry.closed(info("s1", state="closed"))
    await writer.flush()
    assert (await registry.lookup("s1")).info.state == "closed"  # type: ignore[union-attr]


async def test_the_logs_position_is_fresher_than_the_description(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    registry = Registry(redis, PipelineWriter(redis), gw.test_settings(tmp_path, "http://x", redis_url=redis_url), "r1")
    await registry.register("alice", "r1", info("s1", last_seq=3), b"{}")
    await redis.hset(keys.SessionKeys.of("ag", "s1").meta, "last_seq", 42)
    assert (await registry.lookup("s1")).info.last_seq == 42  # type: ignore[union-attr]


async def test_expired_sessions_leave_the_index(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    registry = Registry(redis, PipelineWriter(redis), gw.test_settings(tmp_path, "http://x", redis_url=redis_url), "r1")
    await registry.register("alice", "r1", info("s1"), b"{}")
    await redis.delete(keys.SessionKeys.of("ag", "s1").meta)
    assert await registry.list_for("alice") == []
    assert await redis.zcard(keys.principal_index("ag", "alice")) == 0


