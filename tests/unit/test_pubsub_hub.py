"""PubSubHub against a real Redis that restarts: every subscriber is told once it is subscribed
again, and those catch-up notices are spread out rather than all at once (no thundering herd)."""

import asyncio
import time

from redis.asyncio import Redis

from gateway.store.pubsub import RESUBSCRIBE_SPREAD_S, PubSubHub
from tests.support.event_logs import wait_for
from tests.support.redis_server import RedisServer


async def test_a_reconnect_tells_every_subscriber_once_spread_over_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    reconnected: list[float] = []
    hub = PubSubHub(redis, 1.0, on_reconnect=lambda: reconnected.append(time.monotonic()))
    hub.start()
    told: dict[str, float] = {}
    try:
        for n in range(600):
            channel = f"c{n}"
            await hub.subscribe(channel, lambda data: None, lambda channel=channel: told.__setitem__(channel, time.monotonic()))
        server.kill()
        await asyncio.sleep(0.2)
        server.start()
        await wait_for(lambda: len(told) == 600, 20)
        assert len(reconnected) == 1
        times = sorted(told.values())
        spread = times[-1] - times[0]
        assert 0.3 < spread <= RESUBSCRIBE_SPREAD_S + 0.5, spread  # 600 at 500 a second: about 1.2 s
        assert await redis.pubsub_numsub("c0", "c599") == [(b"c0", 1), (b"c599", 1)]  # every channel came back
    finally:
        await hub.stop()
        await redis.aclose()
        server.stop()
