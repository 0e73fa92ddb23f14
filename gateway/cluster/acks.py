"""Ack records in Redis (`P:{sid}:acks`, frame id -> encoded Ack, expiring `ack_ttl_s` after the
last write), so a frame re-sent under the same id to any replica runs at most once.

Only the owner reads and writes them, around `Session.execute`. Redis failing costs the guarantee
across replicas, never the frame: the owner's in-memory record still holds within the process.
"""

import logging

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.wire.server import Ack

log = logging.getLogger("gateway.cluster.acks")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Ack).decode


class AckRecords:
    """One session's records."""

    def __init__(self, redis: Redis, key: str, ttl_s: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_s = max(1, int(ttl_s))

    async def get(self, frame_id: str) -> Ack | None:
        try:
            raw = await self._redis.hget(self._key, frame_id)
        except (RedisError, OSError) as exc:
            log.warning("ack records unreadable (%s): %r", self._key, exc)
            return None
        return None if raw is None else _decode(raw)

    async def put(self, ack: Ack) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._key, ack.id, _encode(ack))
                pipe.expire(self._key, self._ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("ack of %s not recorded (%s): %r", ack.id, self._key, exc)
