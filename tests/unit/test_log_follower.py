"""LogFollower and PubSubHub against a real Redis: another replica's view of a session's log.

The owner (RedisEventLog + EventFeed) and the follower use separate Redis clients, as two replicas do.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.events.feed import EventFeed
from gateway.events.follower import LogFollower, LogGone
from gateway.store.pubsub import PubSubHub, _Subscription
from gateway.wire.events import Stream
from tests.support.event_logs import Recorder, claimed_log, new_keys, wait_for
from tests.support.redis_server import RedisServer

EVENT = Stream(event={"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}})


class LossyHub(PubSubHub):
    """A hub that loses the next `drop` live batches, as a pub/sub connection can."""

    drop = 0
    dropped = 0

    def _deliver(self, subscription: _Subscription, data: bytes) -> None:
        if self.drop and data != b"end":
            self.drop -= 1
            self.dropped += 1
            return
        super()._deliver(subscription, data)


class Replicas:
    """An owner's Redis client, and a second replica's client and hub."""

    def __init__(self, url: str) -> None:
        self.owner = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.other = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.hub = LossyHub(self.other, timeout_s=2)
        self.hub.start()

    async def close(self) -> None:
        await self.hub.stop()
        await self.owner.aclose()
        await self.other.aclose()


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Replicas]:
    pair = Replicas(redis_url)
    yield pair
    await pair.close()


def emit(feed: EventFeed, count: int) -> None:
    for _ in range(count):
        feed.emit(EVENT)


async def test_replay_then_live_through_a_follower(replicas: Replicas) -> None:
    log = await claimed_log(replicas.owner)
    feed = EventFeed(log)
    emit(feed, 30)
    await wait_for(lambda: log.flushed_seq == 30)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    assert (follower.epoch, follower.last_seq) == (log.epoch, 30)
    sink = Recorder()
    replay = await follower.attach(sink, 10)
    assert replay is not None and [json.loads(f)["seq"] for f in replay] == list(range(11, 31))
    sink.frames[:0] = replay
    emit(feed, 20)
    await wait_for(lambda: follower.last_seq == 50)
    assert sink.seqs() == list(range(11, 51))
    assert await follower.attach(Recorder(), 51) is None  # beyond the top
    await follower.close()
    await log.close(ended=False)


async def test_a_cursor_the_follower_has_not_seen_yet_waits_for_it(replicas: Replicas) -> None:
    """A client of the owner's replica can be ahead of the Stream by a flush; it resumes here, no reset."""
    log = await claimed_log(replicas.owner)
    feed = EventFeed(log)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    emit(feed, 5)  # delivered on the owner at once, not yet flushed nor followed
    sink = Recorder()
    assert follower.last_seq == 0 and await follower.attach(sink, 5) == []
    emit(feed, 2)
    await wait_for(lambda: follower.last_seq == 7)
    assert sink.seqs() == [6, 7]
    await follower.close()
    await log.close(ended=False)


async def test_a_lost_live_message_is_read_from_the_stream(replicas: Replicas) -> None:
    log = await claimed_log(replicas.owner)
    feed = EventFeed(log)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    sink = Recorder()
    assert await follower.attach(sink, 0) == []
    emit(feed, 5)
    await wait_for(lambda: follower.last_seq == 5)
    replicas.hub.drop = 1
    emit(feed, 5)  # this flush's batch is lost on the way to the follower
    await wait_for(lambda: replicas.hub.dropped == 1)
    await asyncio.sleep(0.05)
    assert follower.last_seq == 5  # nothing tells it yet: the next batch does
    emit(feed, 5)
    await wait_for(lambda: follower.last_seq == 15)
    assert sink.seqs() == list(range(1, 16))
    await follower.close()
    await log.close(ended=False)


async def test_the_end_marker_ends_the_followers_sinks(replicas: Replicas) -> None:
    log = await claimed_log(replicas.owner)
    feed = EventFeed(log)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    sink = Recorder()
    await follower.attach(sink, 0)
    emit(feed, 3)
    await log.close(ended=True)
    await wait_for(lambda: sink.ended)
    assert sink.seqs() == [1, 2, 3] and follower.ended
    await follower.close()


async def test_a_follower_started_after_the_end_ends_at_once(replicas: Replicas) -> None:
    log = await claimed_log(replicas.owner)
    emit(EventFeed(log), 3)
    await log.close(ended=True)
    await replicas.owner.hset(log._keys.meta, "state", "closed")  # as the registry records a close
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    await wait_for(lambda: follower.ended)
    assert follower.last_seq == 3
    await follower.close()
    with pytest.raises(LogGone):
        await LogFollower.start(replicas.other, replicas.hub, new_keys())


async def test_a_trimmed_cursor_is_refused(replicas: Replicas) -> None:
    log = await claimed_log(replicas.owner, log_max_events=10)
    emit(EventFeed(log), 40)
    await wait_for(lambda: log.flushed_seq == 40)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    assert await follower.attach(Recorder(), log.first_seq - 2) is None
    assert await follower.attach(Recorder(), log.first_seq - 1) is not None
    await follower.close()
    await log.close(ended=False)


async def test_a_restarted_redis_reconnects_the_hub_and_the_follower_fills_the_gap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    replicas = Replicas(server.url)
    try:
        log = await claimed_log(replicas.owner, redis_timeout_s=1)
        feed = EventFeed(log)
        follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
        sink = Recorder()
        await follower.attach(sink, 0)
        emit(feed, 10)
        await wait_for(lambda: follower.last_seq == 10)
        server.kill()
        emit(feed, 10)  # written once Redis is back, published while the follower may not be listening yet
        await asyncio.sleep(0.3)
        server.start()
        await wait_for(lambda: log.flushed_seq == 20, 20)
        await wait_for(lambda: follower.last_seq == 20, 20)  # no later event needed: the reconnect triggers the read
        emit(feed, 5)
        await wait_for(lambda: follower.last_seq == 25, 20)
        assert sink.seqs() == list(range(1, 26)) and not sink.ended
        await follower.close()
        await log.close(ended=False)
    finally:
        await replicas.close()
        server.stop()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.integers(1, 25)),
        st.tuples(st.just("turns"), st.integers(1, 6)),
        st.tuples(st.just("attach_owner"), st.integers(0, 120)),
        st.tuples(st.just("attach_follower"), st.integers(0, 120)),
        st.tuples(st.just("drop"), st.integers(1, 2)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=ops, max_events=st.integers(5, 60))
def test_replay_and_live_are_exact_on_both_replicas(redis_url: str, ops: list[tuple[str, int]], max_events: int) -> None:
    """Random interleavings of emits (trimming the log), loop turns, lost pub/sub batches and attaches
    at random cursors, on the owner's feed and on another replica's follower: every attach is refused
    only when its cursor is past the top or trimmed, and its replay + live is every seq once, in order
    (a follower whose gap was trimmed before it could read it ends its sinks: a prefix, then the end)."""

    async def run() -> None:
        replicas = Replicas(redis_url)
        try:
            log = await claimed_log(replicas.owner, log_max_events=max_events)
            feed = EventFeed(log)
            emit(feed, 1)
            await wait_for(lambda: log.flushed_seq == 1)
            follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
            attaches: list[tuple[str, int, int, Recorder, asyncio.Task[list[bytes] | None]]] = []

            seen_drops = 0

            async def settle() -> None:
                """Everything flushed and followed; a lost batch shows only behind the next one: emit it."""
                nonlocal seen_drops
                while True:
                    await wait_for(lambda: log.flushed_seq == log.last_seq and (follower.last_seq == log.last_seq or follower.ended or replicas.hub.dropped > seen_drops))
                    if follower.last_seq == log.last_seq or follower.ended:
                        return
                    seen_drops = replicas.hub.dropped
                    emit(feed, 1)

            for op, arg in ops:
                if op == "emit":
                    emit(feed, arg)
                elif op == "turns":
                    for _ in range(arg):
                        await asyncio.sleep(0)
                elif op == "drop":
                    replicas.hub.drop += arg
                elif op == "settle":
                    await settle()
                else:
                    side = feed if op == "attach_owner" else follower
                    sink = Recorder()
                    top_then = log.committed_seq if op == "attach_owner" else follower.last_seq  # what each can serve
                    attaches.append((op, arg, top_then, sink, asyncio.create_task(side.attach(sink, arg))))
            replicas.hub.drop = 0
            emit(feed, 1)  # a last batch shows the follower any gap before it
            await settle()
            top, first = log.last_seq, log.first_seq
            for op, after, top_then, sink, task in attaches:
                replay = await task
                if replay is None:
                    assert after > top_then or after + 1 < first, (op, after, top_then, first)
                    continue
                sink.frames[:0] = replay
                seqs = sink.seqs()
                if op == "attach_follower" and follower.ended:
                    assert sink.ended and seqs == list(range(after + 1, after + 1 + len(seqs)))
                else:
                    assert seqs == list(range(after + 1, top + 1)), (op, after)
            if not replicas.hub.dropped:
                assert not follower.ended
            await follower.close()
            await log.close(ended=False)
        finally:
            await replicas.close()

    with patch("gateway.events.follower.CATCH_UP_S", 0.02):  # cursors past the top are common here
        asyncio.run(run())


@pytest.mark.parametrize("ending", ["closed", "gap"])
async def test_a_follower_ending_while_an_attach_waits_to_catch_up_subscribes_nothing(replicas: Replicas, ending: str) -> None:
    """A cursor a flush ahead waits for the follower; should the follower end meanwhile (the session
    closed, or a gap it can't fill) the sink is not left subscribed to it, getting nothing, never ended."""
    log = await claimed_log(replicas.owner)
    feed = EventFeed(log)
    emit(feed, 5)
    await wait_for(lambda: log.flushed_seq == 5)
    follower = await LogFollower.start(replicas.other, replicas.hub, log._keys)
    sink = Recorder()
    attaching = asyncio.create_task(follower.attach(sink, 8))
    await asyncio.sleep(0.05)
    emit(feed, 3)
    if ending == "closed":  # the last batch and the end marker arrive together
        await log.close(ended=True)
    else:  # the batch that reaches the cursor, then one that can't be placed, before the attach goes on
        deliver = follower._deliver

        def delivering(frames: list[bytes]) -> None:
            deliver(frames)
            if follower.last_seq >= 8:
                follower._lost("a gap it can't fill")

        follower._deliver = delivering  # type: ignore[method-assign]
    await attaching
    assert follower.ended and follower.sink_count == 0
    later = Recorder()
    follower.subscribe(later)
    assert later.ended and follower.sink_count == 0
    await follower.close()
