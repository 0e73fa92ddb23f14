"""The session registry in Redis: what any replica needs to find, list, count and describe a session.

Per session, fields of `P:{sid}:meta`: `principal`, `profile`, `owner`, `state`, `created_at`,
`last_activity` and `info` (the SessionInfo JSON); per principal, the ZSET `P:principal:<p>` of its
session ids; per `open` frame id, `P:opened:<p>:<id>` names the session it made. The owner writes
`info` when something in it other than the event count changes (state, model, mode, approvals, a
turn's cost), through the replica's `PipelineWriter`, never once per event; `last_seq`, kept in the
same hash by the log's append script, is the fresher position and wins over the one inside `info`.
A closed session's description is final. Index entries whose meta hash has expired are dropped when
a listing meets them.
"""

from collections.abc import Callable

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.cluster import keys
from gateway.cluster.writer import PipelineWriter
from gateway.config import Settings
from gateway.wire.server import SessionInfo

_encode = msgspec.json.Encoder().encode
_decode_info = msgspec.json.Decoder(SessionInfo).decode


class Entry(msgspec.Struct, frozen=True):
    """A session as the registry knows it."""

    principal: str
    owner: str
    info: SessionInfo

    @property
    def closed(self) -> bool:
        return self.info.state == "closed"


def _entry(fields: list[bytes | None]) -> Entry | None:
    principal, owner, raw, last_seq = fields
    if principal is None or raw is None:
        return None
    info = _decode_info(raw)
    if last_seq is not None and int(last_seq) > info.last_seq:
        info = msgspec.structs.replace(info, last_seq=int(last_seq))
    return Entry(principal=principal.decode(), owner=(owner or b"").decode(), info=info)


_FIELDS = ("principal", "owner", "info", "last_seq")


class Registry:
    def __init__(self, redis: Redis, writer: PipelineWriter, settings: Settings) -> None:
        self._redis = redis
        self._writer = writer
        self._prefix = settings.redis_key_prefix
        self._retention_s = int(settings.log_max_age_s + settings.idle_timeout_s) + 1
        self._closed_retention_s = max(1, int(settings.closed_retention_s))
        self._ack_ttl_s = max(1, int(settings.ack_ttl_s))

    def _keys(self, session_id: str) -> keys.SessionKeys:
        return keys.SessionKeys.of(self._prefix, session_id)

    async def register(self, principal: str, owner: str, info: SessionInfo) -> None:
        """A new session, listed for its principal from now on."""
        k = self._keys(info.session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.meta, mapping={
                "principal": principal, "profile": info.profile, "owner": owner, "state": info.state,
                "created_at": info.created_at, "last_activity": info.last_activity, "info": _encode(info),
            })
            pipe.expire(k.meta, self._retention_s)
            pipe.zadd(keys.principal_index(self._prefix, principal), {info.session_id: info.created_at})
            await pipe.execute()

    async def reserve_open(self, principal: str, frame_id: str, session_id: str, *, replace: bool = False) -> str | None:
        """Name `session_id` as what `open` frame `frame_id` makes, unless an earlier copy of the frame
        already named one (returned); `replace` takes the name over (the earlier session is closed)."""
        key = keys.opened(self._prefix, principal, frame_id)
        if replace:
            await self._redis.set(key, session_id, ex=self._ack_ttl_s)
            return None
        earlier = await self._redis.set(key, session_id, ex=self._ack_ttl_s, nx=True, get=True)
        return None if earlier is None else earlier.decode()

    async def unreserve_open(self, principal: str, frame_id: str) -> None:
        """The open failed: a copy of the frame sent later tries again."""
        await self._redis.delete(keys.opened(self._prefix, principal, frame_id))

    async def lookup(self, session_id: str) -> Entry | None:
        return _entry(await self._redis.hmget(self._keys(session_id).meta, _FIELDS))

    async def list_for(self, principal: str) -> list[Entry]:
        index = keys.principal_index(self._prefix, principal)
        ids = [i.decode() for i in await self._redis.zrange(index, 0, -1)]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hmget(self._keys(session_id).meta, _FIELDS)
            rows = await pipe.execute()
        found = [_entry(row) for row in rows]
        gone = [sid for sid, entry in zip(ids, found) if entry is None]
        if gone:
            await self._redis.zrem(index, *gone)
        return [entry for entry in found if entry is not None]

    async def live_count(self, principal: str) -> int:
        return sum(1 for entry in await self.list_for(principal) if not entry.closed)

    async def closed(self, info: SessionInfo) -> None:
        """The session's final description; its meta hash now expires after `closed_retention_s`.
        Written at once, never overwritten by an older description queued or in flight."""
        self._writer.discard(("info", info.session_id))
        k = self._keys(info.session_id)
        async with self._writer.sending, self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.meta, mapping={"state": "closed", "last_activity": info.last_activity, "info": _encode(info)})
            pipe.expire(k.meta, self._closed_retention_s)
            await pipe.execute()

    def changed(self, session_id: str, describe: Callable[[], SessionInfo]) -> None:
        """The session's description changed: the writer stores `describe()` soon (sync, O(1))."""
        def write(pipe: Pipeline) -> None:
            info = describe()
            pipe.hset(self._keys(session_id).meta, mapping={"state": info.state, "last_activity": info.last_activity, "info": _encode(info)})

        self._writer.put(("info", session_id), write)
