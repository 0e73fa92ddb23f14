"""Ownership against a real Redis: one owner per session, renewal in one pipeline, fencing tokens rise."""

import asyncio

import pytest

from gateway.cluster import keys
from gateway.cluster.ownership import ClaimRefused, Ownership
from gateway.store.redis import connect
from tests.support import gateway as gw


@pytest.fixture
async def redis(tmp_path, redis_url):  # type: ignore[no-untyped-def]
    client = connect(gw.test_settings(tmp_path, "http://x", redis_url=redis_url))
    yield client
    await client.aclose()


def settings(tmp_path, redis_url, **overrides):  # type: ignore[no-untyped-def]
    return gw.test_settings(tmp_path, "http://x", redis_url=redis_url, **overrides)


async def test_one_owner_at_a_time_and_each_claim_raises_the_fence(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    lost: list[str] = []
    a = Ownership(redis, settings(tmp_path, redis_url), "a", lost.append)
    b = Ownership(redis, settings(tmp_path, redis_url), "b", lost.append)
    first = await a.claim("s1")
    with pytest.raises(ClaimRefused):
        await b.claim("s1")
    assert a.holds("s1") and not b.holds("s1")
    await a.release("s1")
    second = await b.claim("s1")
    assert second == first + 1
    k = keys.SessionKeys.of("ag", "s1")
    assert await redis.get(k.owner) == f"b:{second}".encode()
    assert int(await redis.hget(k.meta, "fence")) == second


async def test_release_leaves_a_lease_taken_over_alone(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    a = Ownership(redis, settings(tmp_path, redis_url), "a", lambda sid: None)
    await a.claim("s1")
    k = keys.SessionKeys.of("ag", "s1")
    await redis.set(k.owner, "b:99")
    await a.release("s1")
    assert await redis.get(k.owner) == b"b:99"


async def test_renewal_keeps_leases_and_keys_alive_and_reports_lost_ones(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    lost: list[str] = []
    a = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.3), "a", lost.append)
    await a.claim("kept")
    await a.claim("stolen")
    kept = keys.SessionKeys.of("ag", "kept")
    await redis.xadd(kept.log, {"f": b"x"}, id="1-0")
    await redis.set(keys.SessionKeys.of("ag", "stolen").owner, "b:7")
    assert await a.renew() == ["stolen"]
    assert lost == ["stolen"] and a.holds("kept") and not a.holds("stolen")
    assert 0 < await redis.pttl(kept.owner) <= 300
    assert await redis.ttl(kept.log) > 3600  # log_max_age_s + idle_timeout_s
    assert await redis.zscore(keys.replicas("ag"), "a") is not None


async def test_the_renewal_task_holds_a_lease_past_its_ttl(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    a = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.3), "a", lambda sid: None)
    await a.claim("s1")
    a.start()
    try:
        await asyncio.sleep(1.0)
        assert await redis.get(keys.SessionKeys.of("ag", "s1").owner) is not None
    finally:
        await a.stop()
    assert await redis.zscore(keys.replicas("ag"), "a") is None
    await asyncio.sleep(0.4)  # no renewal any more: the lease runs out
    assert await redis.get(keys.SessionKeys.of("ag", "s1").owner) is None
