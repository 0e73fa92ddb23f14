"""Ack records in Redis (`P:{sid}:acks`, frame id -> encoded Ack, expiring `ack_ttl_s` after the
last write), so a frame re-sent under the same id to any replica runs at most once.

Only the owner reads and writes them, around `Session.execute`; a record is written through the
replica's `PipelineWriter`, so the ack goes out without waiting for Redis (until the owner changes,
the owner's in-memory record covers the moment before the write lands). Redis failing costs the
guarantee across owners, never the frame.
"""

import logging

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from gateway.cluster.writer import PipelineWriter
from gateway.wire.server import Ack

log = logging.getLogger("gateway.cluster.acks")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Ack).decode


class AckRecords:
    """One session's records."""

    def __init__(self, redis: Redis, writer: PipelineWriter, key: str, ttl_s: float) -> None:
        self._redis = redis
        self._writer = writer
        self._key = key
        self._ttl_s = max(1, int(ttl_s))

    async def get(self, frame_id: str) -> Ack | None:
        try:
            raw = await self._redis.hget(self._key, frame_id)
        except (RedisError, OSError) as exc:
            log.warning("ack records unreadable (%s): %r", self._key, exc)
            return None
        return None if raw is None else _decode(raw)

    def put(self, ack: Ack) -> None:
        """Queue the record (sync: the ack is sent without waiting for Redis)."""
        record = _encode(ack)

        def write(pipe: Pipeline) -> None:
            pipe.hset(self._key, ack.id, record)
            pipe.expire(self._key, self._ttl_s)

        self._writer.put((self._key, ack.id), write)
