"""Writes to Redis that nothing waits for (session descriptions, ack records), sent by ONE task per
replica in one pipeline per wake-up.

Invariants: `put` is sync and O(1), so it can sit on a hot path or between a frame and its reply; a
write queued under a key replaces the one under the same key not yet sent; a failed pipeline leaves
its writes queued (behind newer ones under the same keys) and is retried after a pause; whoever must
not race a pipeline in flight (a final write) holds `sending`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger("gateway.cluster.writer")

RETRY_S = 1.0
Write = Callable[[Pipeline], None]


class PipelineWriter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: dict[Hashable, Write] = {}
        self._wake = asyncio.Event()
        self.sending = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def put(self, key: Hashable, write: Write) -> None:
        self._queued[key] = write
        self._wake.set()

    def discard(self, key: Hashable) -> None:
        self._queued.pop(key, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="redis-writer")

    async def stop(self) -> None:
        """Stop the task, then send what is queued (once: an unreachable Redis loses it, logged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except (RedisError, OSError) as exc:
            log.warning("%d queued writes lost at shutdown: %r", len(self._queued), exc)

    async def _write_forever(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage
                    log.warning("queued writes failed (retrying every %g s): %r", RETRY_S, exc)
                failing = True
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            if failing:
                log.warning("queued writes resumed")
            failing = False

    async def flush(self) -> None:
        """Send everything queued in one pipeline."""
        if not self._queued:
            return
        async with self.sending:
            queued, self._queued = self._queued, {}
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for write in queued.values():
                        write(pipe)
                    await pipe.execute()
            except BaseException:
                self._queued = {**queued, **self._queued}
                raise
