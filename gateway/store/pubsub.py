"""One Redis pub/sub connection per replica, shared by every channel the replica listens on.

Invariant: a subscriber's `on_message` gets the messages of its channel in the order Redis sent them,
from the moment `subscribe` returns (Redis has confirmed the subscription) until `unsubscribe`. When
the connection drops, messages published until it is back are lost: every subscriber that is still
subscribed is told (`on_resubscribed`, once Redis has confirmed the new subscription) so it can read
what it missed from where it is kept (a session's Stream). One reader task, owned by the hub, reads
the connection; it reconnects with jittered backoff and never blocks the event loop.

No thundering herd after a Redis restart: every replica reconnects after its own jittered backoff,
re-sends all its channels in one SUBSCRIBE, and spreads its subscribers' catch-up reads over up to
RESUBSCRIBE_SPREAD_S (at most RESUBSCRIBES_PER_S a second), rather than all reading at once through
a connection pool that refuses what it can't hold.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

log = logging.getLogger("gateway.pubsub")

BACKOFF_S = (0.05, 2.0)
RESUBSCRIBES_PER_S, RESUBSCRIBE_SPREAD_S = 500, 2.0


class _Subscription:
    __slots__ = ("on_message", "on_resubscribed", "confirmed")

    def __init__(self, on_message: Callable[[bytes], None], on_resubscribed: Callable[[], None] | None) -> None:
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class PubSubHub:
    def __init__(self, redis: Redis, timeout_s: float, on_reconnect: Callable[[], None] | None = None) -> None:
        self._pubsub = redis.pubsub()
        self._on_reconnected = on_reconnect  # told at once: Redis is back
        self._timeout_s = timeout_s
        self._subscriptions: dict[bytes, _Subscription] = {}
        self._resubscribing: set[bytes] = set()  # channels sent again after a reconnect, not yet confirmed
        self._connected = asyncio.Event()  # the connection exists: the reader has something to read
        self._task: asyncio.Task[None] | None = None
        self._spread: set[asyncio.TimerHandle] = set()  # resubscribed subscribers not told yet

    def start(self) -> None:
        self._task = asyncio.create_task(self._read_forever(), name="pubsub-reader")

    async def stop(self) -> None:
        for handle in self._spread:
            handle.cancel()
        self._spread.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None], on_resubscribed: Callable[[], None] | None = None) -> None:
        """Listen on `channel`; returns once Redis confirmed it (bounded by the Redis timeout)."""
        name = channel.encode()
        subscription = self._subscriptions[name] = _Subscription(on_message, on_resubscribed)
        try:
            await self._pubsub.subscribe(name)
            if not self._connected.is_set():
                assert self._pubsub.connection is not None
                self._pubsub.connection.register_connect_callback(self._on_reconnect)
                self._connected.set()
            async with asyncio.timeout(self._timeout_s):
                await asyncio.shield(subscription.confirmed)
        except BaseException:
            if self._subscriptions.get(name) is subscription:
                del self._subscriptions[name]
            raise

    async def unsubscribe(self, channel: str) -> None:
        name = channel.encode()
        if self._subscriptions.pop(name, None) is not None:
            with contextlib.suppress(RedisError, OSError):  # a dropped connection forgets it anyway
                await self._pubsub.unsubscribe(name)

    def _on_reconnect(self, connection: Connection) -> None:
        """redis-py reconnected (and re-sent every SUBSCRIBE): tell each subscriber once Redis confirms."""
        log.warning("pub/sub connection re-established; %d channels to confirm", len(self._subscriptions))
        self._resubscribing = set(self._subscriptions)
        if self._on_reconnected is not None:
            self._call(self._on_reconnected)

    async def _read_forever(self) -> None:
        await self._connected.wait()
        backoff = BACKOFF_S[0]
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                if backoff == BACKOFF_S[0]:  # once per outage, not per attempt
                    log.warning("pub/sub connection lost, reconnecting with backoff: %r", exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            backoff = BACKOFF_S[0]
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        subscription = self._subscriptions.get(channel)
        if subscription is None:
            return
        if kind == "message":
            self._deliver(subscription, message["data"])
        elif kind == "subscribe":
            if not subscription.confirmed.done():
                subscription.confirmed.set_result(None)
            elif channel in self._resubscribing:
                self._resubscribing.discard(channel)
                if subscription.on_resubscribed is not None:
                    self._tell_later(subscription.on_resubscribed)

    def _tell_later(self, callback: Callable[[], None]) -> None:
        spread = min(RESUBSCRIBE_SPREAD_S, len(self._subscriptions) / RESUBSCRIBES_PER_S)

        def tell() -> None:
            self._spread.discard(handle)
            self._call(callback)

        handle = asyncio.get_running_loop().call_later(random.uniform(0, spread), tell)
        self._spread.add(handle)

    def _deliver(self, subscription: _Subscription, data: bytes) -> None:
        self._call(subscription.on_message, data)

    def _call(self, callback: Callable[..., None], *args: bytes) -> None:
        try:
            callback(*args)
        except Exception:  # one subscriber's bug must not stop the replica's only reader
            log.exception("pub/sub subscriber failed")
