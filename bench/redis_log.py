"""The Redis event log's cost, in one process against a real redis-server: `python -m bench.redis_log`.

Three figures:
- emit: events per CPU-second of this process for a burst through `EventFeed.emit` (64 events per loop
  turn, as the SDK hands messages over), with the `MemoryEventLog` and with the `RedisEventLog`
  (counting its flusher until the last event is in Redis; redis-server's own CPU is shown apart);
- resume through a `LogFollower` on a second connection: the latency of attaching 300 events back
  (p50/p99 over many attaches) and the rate of a 10,000-event replay;
- Redis memory per 1,000 logged events (`MEMORY USAGE` of the Stream, all samples).

Starts its own redis-server unless `--redis-url` is given (then it writes keys under `bench:`).
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from gateway.cluster.keys import SessionKeys
from gateway.config import Settings
from gateway.events.feed import EventFeed
from gateway.events.follower import LogFollower
from gateway.events.log import MemoryEventLog
from gateway.events.redis_log import RedisEventLog
from gateway.store.pubsub import PubSubHub
from gateway.wire.events import Stream

PER_TURN = 64


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Discard:
    def push(self, frame: bytes) -> None:
        pass

    def end(self) -> None:
        pass


def _event(i: int) -> Stream:
    """A streamed text delta, the most common event (about 200 bytes encoded)."""
    return Stream(event={"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"token {i} of a reply "}}, parent_tool_use_id=None)


async def _claimed(redis: Redis, sid: str, settings: Settings) -> RedisEventLog:
    keys = SessionKeys.of(settings.redis_key_prefix, sid)
    token = await redis.hincrby(keys.meta, "fence", 1)
    return await RedisEventLog.create(redis, keys, settings, fence=token, on_fenced=lambda: None)


async def _burst(feed: EventFeed, events: int) -> None:
    for first in range(0, events, PER_TURN):
        for i in range(first, min(first + PER_TURN, events)):
            feed.emit(_event(i))
        await asyncio.sleep(0)


async def emit_rate(redis: Redis, redis_pid: int | None, events: int, settings: Settings) -> tuple[float, float, float]:
    """(memory ev/cpu-s, redis ev/cpu-s, redis-server cpu-s for the burst)."""
    feed = EventFeed(MemoryEventLog(settings.log_max_events, settings.log_max_bytes, settings.log_max_age_s))
    await feed.attach(_Discard(), 0)
    started = time.process_time()
    await _burst(feed, events)
    memory = events / (time.process_time() - started)

    log = await _claimed(redis, "s_bench_emit", settings)
    feed = EventFeed(log)
    await feed.attach(_Discard(), 0)
    server_before = _cpu_s(redis_pid) if redis_pid else 0.0
    started = time.process_time()
    await _burst(feed, events)
    while log.flushed_seq < events:
        await asyncio.sleep(0.001)
    with_redis = events / (time.process_time() - started)
    server = _cpu_s(redis_pid) - server_before if redis_pid else float("nan")
    await log.close(ended=False)
    return memory, with_redis, server


async def resume(redis: Redis, other: Redis, settings: Settings) -> tuple[float, float, float, int]:
    """(p50 ms, p99 ms of a 300-event attach; events/s of a 10,000-event attach; stream bytes per 1,000 events)."""
    log = await _claimed(redis, "s_bench_resume", settings)
    feed = EventFeed(log)
    await _burst(feed, 10_000)
    while log.flushed_seq < 10_000:
        await asyncio.sleep(0.001)
    hub = PubSubHub(other, settings.redis_timeout_s)
    hub.start()
    follower = await LogFollower.start(other, hub, log._keys)
    latencies = []
    for _ in range(300):
        started = time.perf_counter()
        frames = await follower.attach(_Discard(), 10_000 - 300)
        latencies.append(time.perf_counter() - started)
        assert frames is not None and len(frames) == 300
        follower.detach(_Discard())
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        frames = await follower.attach(_Discard(), 0)
        rates.append(10_000 / (time.perf_counter() - started))
        assert frames is not None and len(frames) == 10_000
    usage = await redis.memory_usage(log._keys.log, samples=0) or 0
    await follower.close()
    await hub.stop()
    await log.close(ended=False)
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000, max(rates), usage // 10


async def _run(url: str, redis_pid: int | None, events: int) -> None:
    settings = Settings(redis_url=url, redis_key_prefix="bench", log_max_events=200_000, log_max_bytes=1 << 30)
    redis, other = Redis.from_url(url), Redis.from_url(url)
    try:
        memory, with_redis, server = await emit_rate(redis, redis_pid, events, settings)
        print(f"emit, {events} events, {PER_TURN} per loop turn (events per CPU-second of this process):")
        print(f"  MemoryEventLog  {memory:12,.0f}")
        print(f"  RedisEventLog   {with_redis:12,.0f}   ratio {with_redis / memory:.2f}   (redis-server used {server:.2f} cpu-s more)")
        p50, p99, rate, per_thousand = await resume(redis, other, settings)
        print("resume through a LogFollower (XRANGE on another connection):")
        print(f"  300 events     p50 {p50:.2f} ms   p99 {p99:.2f} ms")
        print(f"  10,000 events  {rate:,.0f} events/s")
        print(f"Redis memory per 1,000 logged events: {per_thousand / 1024:.0f} KiB (stream MEMORY USAGE)")
    finally:
        await redis.aclose()
        await other.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-turn", type=int, default=64, help="events emitted per loop turn (the SDK hands over 1)")
    args = parser.parse_args(argv)
    global PER_TURN
    PER_TURN = args.per_turn
    if args.redis_url:
        asyncio.run(_run(args.redis_url, None, args.events))
        return
    from tests.support.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory)).start()
        try:
            assert server.proc is not None
            asyncio.run(_run(server.url, server.proc.pid, args.events))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
