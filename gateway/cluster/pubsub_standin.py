"""STAND-IN until redis-log's `gateway/store/pubsub.PubSubHub` lands on main; delete it then.

One pub/sub connection for the replica, same calls as the hub: `subscribe(channel, on_message)`,
`unsubscribe(channel)`, `start()`, `stop()`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("gateway.cluster.pubsub")


class PubSubHub:
    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub()
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> None:
        self._handlers[channel] = on_message
        await self._pubsub.subscribe(channel)
        if self._task is None:
            self._task = asyncio.create_task(self._read_forever(), name="pubsub-reader")

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        await self._pubsub.unsubscribe(channel)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()

    async def _read_forever(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                log.warning("pub/sub connection lost (reconnecting): %r", exc)
                await asyncio.sleep(0.5)
                continue
            if message is None or message["type"] != "message":
                continue
            handler = self._handlers.get(message["channel"].decode())
            if handler is not None:
                handler(message["data"])
