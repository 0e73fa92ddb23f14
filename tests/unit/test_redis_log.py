"""RedisEventLog against a real Redis: what the Stream and meta hold, trimming, TTLs, fencing, batching."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.config import Settings
from gateway.events.feed import EventFeed
from gateway.events.redis_log import Fenced, RedisEventLog
from gateway.wire.events import Stream
from tests.support.event_logs import Recorder, claimed_log, command_calls, new_keys, wait_for
from tests.support.redis_server import RedisServer

EVENT = Stream(event={"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hello"}})


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def stream_seqs(redis: Redis, log: RedisEventLog) -> list[int]:
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in await redis.xrange(log._keys.log)]


async def test_stream_and_meta_mirror_the_log(redis: Redis) -> None:
    log = await claimed_log(redis, log_max_events=100)
    feed = EventFeed(log)
    for _ in range(250):
        feed.emit(EVENT)
    await wait_for(lambda: log.flushed_seq == 250)
    meta = await redis.hgetall(log._keys.meta)
    assert meta[b"epoch"].decode() == log.epoch and int(meta[b"last_seq"]) == 250
    assert int(meta[b"first_seq"]) == log.first_seq and int(meta[b"bytes"]) == log._tail.bytes
    assert await stream_seqs(redis, log) == list(range(log.first_seq, 251))  # trimmed exactly as the tail
    entries = await redis.xrange(log._keys.log, min="250-0")
    assert entries[0][1][b"f"] == (await log.read_after(249))[0]  # type: ignore[index]
    await log.close(ended=False)


async def test_trim_by_bytes_and_age_follows_the_tail(redis: Redis) -> None:
    log = await claimed_log(redis, log_max_events=10_000, log_max_bytes=2000, log_max_age_s=3600)
    for seq in range(1, 101):
        log.append(seq, 1000, b"x" * 100)
    await wait_for(lambda: log.flushed_seq == 100)
    assert await stream_seqs(redis, log) == list(range(log.first_seq, 101)) and log.first_seq > 80
    aged = await claimed_log(redis, log_max_age_s=1.0)
    for seq in range(1, 11):
        aged.append(seq, seq * 1000, b"{}")  # a second apart: only the last two are within the age
    await wait_for(lambda: aged.flushed_seq == 10)
    assert await stream_seqs(redis, aged) == [9, 10] == list(range(aged.first_seq, 11))
    for each in (log, aged):
        await each.close(ended=False)


async def test_ttls_while_open_and_after_the_end(redis: Redis) -> None:
    fenced: list[int] = []
    log = await claimed_log(redis, fenced, log_max_age_s=100, idle_timeout_s=50, closed_retention_s=7)
    listener = redis.pubsub()
    await listener.subscribe(log._keys.live)
    await listener.get_message(timeout=1)  # the subscribe confirmation
    log.append(1, 1, b'{"seq":1}')
    await wait_for(lambda: log.flushed_seq == 1)
    assert 140 < await redis.ttl(log._keys.log) <= 151 and 140 < await redis.ttl(log._keys.meta) <= 151
    log.append(2, 2, b'{"seq":2}')
    await log.close(ended=True)  # the last event and the end marker go out together
    assert 0 < await redis.ttl(log._keys.log) <= 8 and 0 < await redis.ttl(log._keys.meta) <= 8
    messages = [await listener.get_message(timeout=1) for _ in range(3)]
    assert [m["data"] for m in messages if m] == [f"{log.epoch} 1 1\n".encode() + b'{"seq":1}', f"{log.epoch} 2 1\n".encode() + b'{"seq":2}', b"end"]
    assert not fenced
    await listener.aclose()


async def test_a_newer_claim_fences_the_log_off(redis: Redis) -> None:
    fenced: list[int] = []
    log = await claimed_log(redis, fenced=fenced)
    log.append(1, 1, b"{}")
    await wait_for(lambda: log.flushed_seq == 1)
    await redis.hincrby(log._keys.meta, "fence", 1)  # another replica claimed the session
    for seq in range(2, 5):
        log.append(seq, seq, b"{}")
    await wait_for(lambda: bool(fenced))
    await asyncio.sleep(0.05)
    assert fenced == [1] and log.fenced and await stream_seqs(redis, log) == [1]
    assert await redis.hget(log._keys.meta, "last_seq") == b"1"
    with pytest.raises(Fenced):  # and a replica with the old token can't start a new log either
        await RedisEventLog.create(redis, log._keys, Settings(), fence=1, on_fenced=lambda: None)
    await log.close(ended=True)  # nothing more is written, and close doesn't wait for it
    assert await stream_seqs(redis, log) == [1]


async def test_a_new_log_is_a_new_epoch_and_starts_empty(redis: Redis) -> None:
    keys = new_keys()
    first = await claimed_log(redis, keys)
    for seq in range(1, 6):
        first.append(seq, seq, b"{}")
    await first.close(ended=False)
    second = await claimed_log(redis, keys)
    assert second.epoch != first.epoch and await redis.hget(keys.meta, "epoch") == second.epoch.encode()
    assert await redis.xlen(keys.log) == 0 and await redis.hget(keys.meta, "last_seq") == b"0"
    await second.close(ended=False)


async def test_one_loop_turn_of_appends_is_one_round_trip(redis: Redis) -> None:
    log = await claimed_log(redis)
    feed = EventFeed(log)
    before = await command_calls(redis, "evalsha") + await command_calls(redis, "eval")
    for _ in range(500):  # one turn: no await between them
        feed.emit(EVENT)
    await wait_for(lambda: log.flushed_seq == 500)
    assert await command_calls(redis, "evalsha") + await command_calls(redis, "eval") - before == 1
    # Spread over turns while a flush is in flight: still far fewer round trips than events.
    before = await command_calls(redis, "evalsha")
    for _ in range(50):
        for _ in range(10):
            feed.emit(EVENT)
        await asyncio.sleep(0)
    await wait_for(lambda: log.flushed_seq == 1000)
    assert await command_calls(redis, "evalsha") - before <= 50
    await log.close(ended=False)


async def test_append_cost_does_not_grow_with_the_log(redis: Redis) -> None:
    """Appending is O(1): as cheap at 100,000 logged events as at the start."""
    log = await claimed_log(redis, log_max_events=200_000, log_max_bytes=1 << 30)
    feed = EventFeed(log)

    async def per_event() -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(2000):
                feed.emit(EVENT)
            best = min(best, time.perf_counter() - started)
            await wait_for(lambda: log.flushed_seq == log.last_seq, 60)
        return best / 2000

    short = await per_event()
    for _ in range(50):
        for _ in range(2000):
            feed.emit(EVENT)
        await wait_for(lambda: log.flushed_seq == log.last_seq, 60)
    assert log.last_seq > 100_000
    long = await per_event()
    assert long < short * 2.5, (short, long)
    await log.close(ended=False)


async def test_an_unreachable_redis_delays_writes_without_blocking(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        log = await claimed_log(redis, redis_timeout_s=0.3)
        feed = EventFeed(log)
        sink = Recorder()
        await feed.attach(sink, 0)
        server.pause()
        started = time.perf_counter()
        for _ in range(100):
            feed.emit(EVENT)
            await asyncio.sleep(0)
        assert time.perf_counter() - started < 0.25  # emits and attaches never wait on Redis
        # Shown to nobody before Redis holds them: an owner dying now takes nothing a client saw.
        assert sink.seqs() == [] and await feed.attach(Recorder(), 0) == []
        await asyncio.sleep(0.5)
        server.resume()
        await wait_for(lambda: log.flushed_seq == 100)
        assert await stream_seqs(redis, log) == list(range(1, 101))
        assert sink.seqs() == list(range(1, 101))  # then all of them, in order, once
        await log.close(ended=False)
    finally:
        server.resume()
        await redis.aclose()
        server.stop()


async def test_an_overflowing_buffer_restarts_the_log_after_the_lost_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        log = await claimed_log(redis, redis_timeout_s=0.3, redis_buffer_events=20)
        feed = EventFeed(log)
        sink = Recorder()
        await feed.attach(sink, 0)
        for _ in range(5):
            feed.emit(EVENT)
        await wait_for(lambda: sink.seqs() == [1, 2, 3, 4, 5])
        server.pause()
        for _ in range(50):  # 30 more than the buffer holds
            feed.emit(EVENT)
        server.resume()
        await wait_for(lambda: log.flushed_seq == 55)
        assert sink.ended and sink.seqs() == [1, 2, 3, 4, 5]  # ended (its client resumes), never given a gap
        assert await stream_seqs(redis, log) == list(range(36, 56))
        assert await redis.hget(log._keys.meta, "first_seq") == b"36"
        assert await feed.attach(Recorder(), 5) is None  # a cursor among the lost ones: a reset
        assert await feed.attach(Recorder(), 35) is not None
        await log.close(ended=False)
    finally:
        server.resume()
        await redis.aclose()
        server.stop()


async def written_log(redis: Redis) -> tuple[RedisEventLog, EventFeed, Recorder]:
    """A claimed log whose feed has a client, with ten events written to Redis."""
    log = await claimed_log(redis)
    feed = EventFeed(log)
    sink = Recorder()
    await feed.attach(sink, 0)
    for _ in range(10):
        feed.emit(EVENT)
    await wait_for(lambda: log.flushed_seq == 10)
    return log, feed, sink


async def test_a_log_redis_lost_is_written_again_in_the_same_epoch_once_claimed_again(redis: Redis) -> None:
    log, feed, sink = await written_log(redis)
    keys = log._keys
    await redis.delete(keys.meta, keys.log)  # as a Redis restarted without persistence
    for _ in range(5):
        feed.emit(EVENT)
    await asyncio.sleep(0.2)
    assert not log.fenced and sink.seqs() == list(range(1, 11))  # waits: nothing shown until it is written
    await redis.hset(keys.meta, "fence", 1)  # the owner's renewal claimed it again (same token)
    log.restore()
    await wait_for(lambda: log.flushed_seq == 15)
    assert await stream_seqs(redis, log) == list(range(1, 16))
    assert await redis.hget(keys.meta, "epoch") == log.epoch.encode() and sink.seqs() == list(range(1, 16))
    await redis.hincrby(keys.meta, "fence", 1)  # a real takeover still fences it off
    feed.emit(EVENT)
    await wait_for(lambda: log.fenced)
    await log.close(ended=False)


async def test_a_log_that_lost_its_last_writes_is_written_again_never_past_a_hole(redis: Redis) -> None:
    log, feed, sink = await written_log(redis)
    keys = log._keys
    # As a replica promoted by a failover, replication being asynchronous: the last three writes never reached it.
    await redis.xdel(keys.log, "8-0", "9-0", "10-0")
    await redis.hset(keys.meta, "last_seq", 7)
    for _ in range(5):
        feed.emit(EVENT)
    await wait_for(lambda: log.flushed_seq == 15)
    assert await stream_seqs(redis, log) == list(range(1, 16))  # 8..10 written again, not skipped
    assert int(await redis.hget(keys.meta, "last_seq")) == 15 and await redis.hget(keys.meta, "epoch") == log.epoch.encode()
    assert not log.fenced and sink.seqs() == list(range(1, 16))  # the owner's clients get each event once
    await log.close(ended=False)
