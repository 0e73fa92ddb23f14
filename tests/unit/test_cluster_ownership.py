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


async def test_an_orphan_is_adopted_by_exactly_one_replica_which_fences_the_lost_owner(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    dead = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.2), "dead", lambda sid: None)
    survivors = [Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.2), f"r{n}", lambda sid: None) for n in range(5)]
    old = await dead.claim("s1")
    k = keys.SessionKeys.of("ag", "s1")
    await redis.hset(k.meta, "state", "running")
    assert await survivors[0].orphans(10) == []  # its lease is live: nobody may take it
    assert await survivors[0].adopt("s1") is None
    await asyncio.sleep(0.3)  # the owner is gone: no renewal, the lease runs out
    assert [o.session_id for o in await survivors[0].orphans(10)] == ["s1"]
    tokens = await asyncio.gather(*(s.adopt("s1") for s in survivors))
    won = [n for n, token in enumerate(tokens) if token is not None]
    assert len(won) == 1 and tokens[won[0]] == old + 1
    assert await redis.get(k.owner) == f"r{won[0]}:{old + 1}".encode()
    assert await redis.hget(k.meta, "owner") == f"r{won[0]}".encode()
    assert await survivors[0].orphans(10) == []  # the adopter's lease is listed afresh
    assert await dead.renew() == ["s1"]  # the lost owner finds out at its next renewal


async def test_a_closed_orphan_is_not_adopted_and_leaves_the_lease_list(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    dead = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.1), "dead", lambda sid: None)
    survivor = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.1), "r1", lambda sid: None)
    await dead.claim("s1")
    await redis.hset(keys.SessionKeys.of("ag", "s1").meta, "state", "closed")
    await asyncio.sleep(0.2)
    assert await survivor.adopt("s1") is None
    assert await survivor.orphans(10) == []


async def test_a_lease_is_fresh_only_within_its_ttl_of_its_last_renewal_sent(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    a = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.6), "a", lambda sid: None)
    b = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.6), "b", lambda sid: None)
    await a.claim("s1")
    await a.claim("s2")
    assert a.may_run("s1") and not a.may_run("s3")
    await asyncio.sleep(0.4)
    await a.renew()  # in time: fresh for another 0.6 s from when it was sent
    await asyncio.sleep(0.3)
    assert a.may_run("s1")
    await asyncio.sleep(0.4)  # no renewal since (a paused process): Redis may have let the lease go
    assert not a.may_run("s1")
    await redis.hset(keys.SessionKeys.of("ag", "s1").meta, "state", "idle")
    assert await b.adopt("s1") is not None  # one of them was adopted meanwhile
    assert await a.renew() == ["s1"] and not a.may_run("s1")
    assert a.may_run("s2")  # the other was not: the fence is still a's, so a takes its lease again


async def test_a_session_redis_lost_is_claimed_again_only_by_an_owner_whose_lease_held(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    restored: list[tuple[str, bool]] = []

    async def on_restored(session_id: str, log_lost: bool) -> None:
        restored.append((session_id, log_lost))

    a = Ownership(redis, settings(tmp_path, redis_url, lease_ttl_s=0.6), "a", lambda sid: None, on_restored=on_restored)
    token = await a.claim("s1")
    stale = await a.claim("s2")
    await asyncio.sleep(0.7)  # the leases ran out (Redis unreachable, say)
    assert await a.renew() == [] and a.may_run("s1")  # nobody claimed them since (the fence is a's): taken again
    for sid in ("s1", "s2"):
        k = keys.SessionKeys.of("ag", sid)
        await redis.delete(k.owner, k.meta)  # as a Redis restarted empty
    assert await a.renew() == [] and restored == [("s1", True), ("s2", True)]
    assert await redis.hget(keys.SessionKeys.of("ag", "s1").meta, "fence") == str(token).encode()
    assert await redis.get(keys.SessionKeys.of("ag", "s2").owner) == f"a:{stale}".encode()

    restored.clear()
    await asyncio.sleep(0.7)  # no renewal for longer than the lease, then Redis lost everything
    for sid in ("s1", "s2"):
        k = keys.SessionKeys.of("ag", sid)
        await redis.delete(k.owner, k.meta)
    assert sorted(await a.renew()) == ["s1", "s2"] and restored == []  # not claimed again: let go
    assert await redis.exists(keys.SessionKeys.of("ag", "s1").owner) == 0


async def test_a_session_handed_over_during_a_renewal_stays_listed_as_run_out(tmp_path, redis_url, redis) -> None:  # type: ignore[no-untyped-def]
    """The renewal's pipeline, sent after the handover, must not list the session's lease as running
    for another TTL: the survivors adopt it at once (the handover RPC may have failed)."""
    a = Ownership(redis, settings(tmp_path, redis_url), "a", lambda sid: None)
    await a.claim("s1")
    gate = asyncio.Event()
    renew_one = a._renew

    async def gated(**kwargs):  # type: ignore[no-untyped-def]
        await gate.wait()
        return await renew_one(**kwargs)

    a._renew = gated
    renewing = asyncio.create_task(a.renew())
    await asyncio.sleep(0.01)  # its list of leases is taken
    assert await a.hand_over("s1")
    gate.set()
    await renewing
    assert [sid for sid, _ in await a.orphans(10)] == ["s1"]
