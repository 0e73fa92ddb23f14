"""The session registry in Redis: what any replica needs to find, list, count and describe a session.

Per session, fields of `P:{sid}:meta`: `principal`, `profile`, `owner`, `state`, `created_at`,
`last_activity`, `info` (the SessionInfo JSON), and what a replica adopting the session needs to run
it: `open` (the `open` frame that made it), `conversation` (its CLI conversation id) and, between a
draining owner's handover and the adoption, `handed_over` (unix ms); per principal, the ZSET `P:principal:<p>` of its
session ids; per `open` frame id, `P:opened:<p>:<id>` names the session it made. The owner writes
`info` when something in it other than the event count changes (state, model, mode, approvals, a
turn's cost), through the replica's `PipelineWriter`, never once per event, and only while `owner`
names it (one script): a replica that lost the session unknowingly (paused past its lease, fenced)
can't describe, or close, the next owner's; `last_seq`, kept in the
same hash by the log's append script, is the fresher position and wins over the one inside `info`.
A closed session's description is final. Index entries whose meta hash has expired are dropped when
a listing meets them.
"""

from collections.abc import Callable
from typing import NamedTuple

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


class Adoption(NamedTuple):
    """A session as the replica adopting it finds it in the registry."""

    principal: str
    opened_by: bytes  # the encoded `open` frame that made it
    conversation: str | None  # its CLI conversation id, resumed by the new CLI
    info: SessionInfo  # its last description
    handed_over_ms: int | None  # when its owner handed it over (unix ms); None: its owner was lost


def _entry(fields: list[bytes | None]) -> Entry | None:
    principal, owner, raw, last_seq = fields
    if principal is None or raw is None:
        return None
    info = _decode_info(raw)
    if last_seq is not None and int(last_seq) > info.last_seq:
        info = msgspec.structs.replace(info, last_seq=int(last_seq))
    return Entry(principal=principal.decode(), owner=(owner or b"").decode(), info=info)


_FIELDS = ("principal", "owner", "info", "last_seq")

# KEYS: meta. ARGV: the writing replica, the TTL to give the hash (0: keep it), then field, value pairs.
_DESCRIBE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class Registry:
    def __init__(self, redis: Redis, writer: PipelineWriter, settings: Settings, replica_id: str) -> None:
        self._redis = redis
        self._replica_id = replica_id
        self._writer = writer
        self._prefix = settings.redis_key_prefix
        self._retention_s = int(settings.log_max_age_s + settings.idle_timeout_s) + 1
        self._closed_retention_s = max(1, int(settings.closed_retention_s))
        self._ack_ttl_s = max(1, int(settings.ack_ttl_s))

    def _keys(self, session_id: str) -> keys.SessionKeys:
        return keys.SessionKeys.of(self._prefix, session_id)

    async def register(self, principal: str, owner: str, info: SessionInfo, opened_by: bytes) -> None:
        """A new session, listed for its principal from now on; `opened_by`: its encoded `open` frame."""
        k = self._keys(info.session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.meta, mapping={
                "principal": principal, "profile": info.profile, "owner": owner, "state": info.state,
                "created_at": info.created_at, "last_activity": info.last_activity, "info": _encode(info),
                "open": opened_by,
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

    async def closed(self, info: SessionInfo) -> bool:
        """The session's final description; its meta hash now expires after `closed_retention_s`.
        Written at once, never overwritten by an older description queued or in flight. False: this
        replica is not the session's owner (another one adopted it), and nothing was written."""
        self._writer.discard(("info", info.session_id))
        fields = ("state", "closed", "last_activity", info.last_activity, "info", _encode(info))
        async with self._writer.sending:
            return bool(await self._redis.eval(_DESCRIBE, 1, self._keys(info.session_id).meta, self._replica_id, self._closed_retention_s, *fields))

    async def adoption(self, session_id: str) -> Adoption | None:
        """What a replica adopting the session needs; None when it is gone or was never complete."""
        meta = self._keys(session_id).meta
        principal, opened_by, conversation, raw, handed_over = await self._redis.hmget(meta, ("principal", "open", "conversation", "info", "handed_over"))
        if principal is None or opened_by is None or raw is None:
            return None
        if handed_over is not None:
            await self._redis.hdel(meta, "handed_over")
        return Adoption(
            principal.decode(), opened_by, None if not conversation else conversation.decode(), _decode_info(raw),
            None if handed_over is None else int(handed_over),
        )

    def forget(self, session_id: str) -> None:
        """Another replica owns the session now: a description still queued here is not written."""
        self._writer.discard(("info", session_id))

    def changed(self, session_id: str, describe: Callable[[], SessionInfo], conversation: Callable[[], str | None]) -> None:
        """The session's description changed: the writer stores `describe()` soon (sync, O(1))."""
        def write(pipe: Pipeline) -> None:
            info = describe()
            fields = ("state", info.state, "last_activity", info.last_activity, "info", _encode(info), "conversation", conversation() or "")
            pipe.eval(_DESCRIBE, 1, self._keys(session_id).meta, self._replica_id, 0, *fields)

        self._writer.put(("info", session_id), write)
