"""Which replica runs a session: a lease in Redis (`P:{sid}:owner` = `<replica>:<token>`, PX) plus a
fencing token (`fence` in the session's meta hash, raised by every claim).

Invariants: a session has at most one owner at a time (the claim is one Lua script: SET NX PX and
HINCRBY fence); this replica counts a session as its own only while its renewals find its own value
in the lease; every key of an owned session is kept from expiring by the same renewal. The fencing
token goes to the session's log, whose append script refuses writes under an older token, so even a
replica that missed losing its lease (paused past the TTL) can't write after the next owner claims.
All leases and this replica's heartbeat are renewed in ONE pipeline every `lease_ttl_s / 3`, with a
`watched` mark (TTL `lease_ttl_s`) on every session this replica follows for its clients, which keeps
the owner from reaping a session that only other replicas' clients are attached to.

Redis faults: a lease that ran out while Redis was unreachable (or paused) is taken again by the
renewal as long as the fence is still this replica's token (nobody claimed the session meanwhile:
every claim raises it). A session whose keys Redis lost altogether (restarted empty) is claimed
again -- fence and lease set only where there is no fence, in one script -- provided this replica's
lease was still in force when it last could reach Redis (a replica that was paused past its lease
doesn't: another may have adopted the session before Redis lost it); its owner then registers it
and writes its log again (`on_restored`). While renewals fail, a session keeps running (`may_run`):
its events wait in its log's buffer, shown to nobody, until the fence says whose the session is.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from typing import NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster import keys
from gateway.config import Settings

log = logging.getLogger("gateway.cluster.ownership")

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local token = redis.call('HINCRBY', KEYS[2], 'fence', 1)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return {1, token}
"""

# KEYS: owner, meta, then every other key of the session; ARGV: our lease value, lease ms, retention s,
# our fencing token, 1 when a session Redis lost may be claimed again. Returns RENEWED, RETAKEN (the
# lease had run out, nobody claimed the session since), RECLAIMED (Redis had lost it: claimed again),
# UNREGISTERED (held, but its registry entry is missing), or LOST (another replica claimed it).
_RENEW = """
local holder = redis.call('GET', KEYS[1])
local result = 1
if holder ~= ARGV[1] then
  if holder then return 0 end
  local fence = redis.call('HGET', KEYS[2], 'fence')
  if fence then
    if fence ~= ARGV[4] then return 0 end
    result = 2
  else
    if ARGV[5] ~= '1' then return 0 end
    redis.call('HSET', KEYS[2], 'fence', ARGV[4])
    result = 3
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
for i = 2, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
if result == 1 and redis.call('HEXISTS', KEYS[2], 'principal') == 0 then result = 4 end
return result
"""
LOST, RENEWED, RETAKEN, RECLAIMED, UNREGISTERED = range(5)
RETRY_S = (0.1, 1.0)  # renewals while Redis fails: soon, so leases are back within a second of it

# KEYS: owner, meta; ARGV: our replica id, lease ms. Adopt a session whose lease ran out: one replica
# wins (the lease is set only where none is), and the fence is raised first, so the owner that lost
# it writes nothing more even if it wakes up and still thinks the session is its own.
_ADOPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 'held'} end
local state = redis.call('HGET', KEYS[2], 'state')
if not state or state == 'closed' then return {0, 'gone'} end
local token = redis.call('HINCRBY', KEYS[2], 'fence', 1)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'owner', ARGV[1])
return {1, token}
"""

# KEYS: owner, meta; ARGV: our lease value, now ms. Give a live session up for another replica to adopt
# at once (a draining replica): the lease goes and the meta hash says since when it was handed over.
_HAND_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'handed_over', ARGV[2])
return redis.call('DEL', KEYS[1])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


Restored = Callable[[str, bool], Awaitable[None]]
"""Called for a held session whose registry entry Redis lost: re-register it and, when its log was
lost too (the claim was taken again), write the log again."""


class ClaimRefused(Exception):
    """Another replica holds the session's lease."""


class Orphan(NamedTuple):
    session_id: str
    renewed_ms: int  # unix ms of its lost owner's last renewal


class Ownership:
    def __init__(
        self, redis: Redis, settings: Settings, replica_id: str, on_lost: Callable[[str], None],
        watched: Callable[[], Collection[str]] = tuple, on_restored: Restored | None = None,
    ) -> None:
        self.replica_id = replica_id
        self._redis = redis
        self._prefix = settings.redis_key_prefix
        self._lease_ms = int(settings.lease_ttl_s * 1000)
        self._retention_s = int(settings.log_max_age_s + settings.idle_timeout_s) + 1
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._watched = watched
        self._cut_at: float | None = None  # when renewals began to fail (monotonic); None: they succeed
        self._soon = asyncio.Event()  # cuts the wait for the next renewal short
        self._held: dict[str, str] = {}  # session id -> our lease value
        self._deadline: dict[str, float] = {}  # session id -> monotonic time its lease may run out
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._adopt = redis.register_script(_ADOPT)
        self._hand_over = redis.register_script(_HAND_OVER)
        self._leases = keys.leases(self._prefix)
        self._task: asyncio.Task[None] | None = None
        self._listed = True  # in the live list (until it drains)

    def holds(self, session_id: str) -> bool:
        return session_id in self._held

    def may_run(self, session_id: str) -> bool:
        """Whether the session may go on here: this replica's lease on it is surely still in force
        (its last renewal or claim was sent less than `lease_ttl_s` ago by this process's clock, and
        Redis started the lease's time later than that), or was when Redis became unreachable (its
        events then wait, shown to nobody, until the fence says whose the session is). Past that (a
        paused process) another replica may have adopted the session."""
        if time.monotonic() < self._deadline.get(session_id, 0.0):
            return True
        return self._cut_at is not None and session_id in self._held and self._cut_at < self._deadline[session_id]

    async def claim(self, session_id: str) -> int:
        """Become the session's owner; the fencing token its log writes under."""
        k = keys.SessionKeys.of(self._prefix, session_id)
        sent = time.monotonic()
        won, value = await self._claim(keys=[k.owner, k.meta], args=[self.replica_id, self._lease_ms])
        if not won:
            raise ClaimRefused(f"session {session_id} is held by {value.decode() if isinstance(value, bytes) else value}")
        return await self._hold(session_id, int(value), sent)

    async def _hold(self, session_id: str, token: int, sent: float) -> int:
        self._held[session_id] = f"{self.replica_id}:{token}"
        self._deadline[session_id] = sent + self._lease_ms / 1000
        await self._redis.zadd(self._leases, {session_id: int(time.time() * 1000) + self._lease_ms})
        return token

    async def orphans(self, limit: int) -> list[Orphan]:
        """Sessions whose lease ran out without being released (their owner is gone), oldest first."""
        now = int(time.time() * 1000)
        found = await self._redis.zrangebyscore(self._leases, "-inf", now, start=0, num=limit, withscores=True)
        return [Orphan(sid.decode(), int(score) - self._lease_ms) for sid, score in found]

    async def adopt(self, session_id: str) -> int | None:
        """Take over a session whose lease ran out: its new fencing token, or None when another replica
        was first (or the session is gone: then it leaves the lease list)."""
        k = keys.SessionKeys.of(self._prefix, session_id)
        sent = time.monotonic()
        won, value = await self._adopt(keys=[k.owner, k.meta], args=[self.replica_id, self._lease_ms])
        if won:
            return await self._hold(session_id, int(value), sent)
        if value == b"gone":
            await self._redis.zrem(self._leases, session_id)
        return None

    async def release(self, session_id: str) -> None:
        """Give the lease up (the session closed); a lease already taken over is left alone."""
        value = self._held.pop(session_id, None)
        self._deadline.pop(session_id, None)
        if value is not None:
            k = keys.SessionKeys.of(self._prefix, session_id)
            if await self._release(keys=[k.owner], args=[value]):
                await self._redis.zrem(self._leases, session_id)

    async def hand_over(self, session_id: str) -> bool:
        """Give the session up for adoption now, its lease gone and listed as run out. False when the
        lease was not ours any more."""
        value = self._held.pop(session_id, None)
        self._deadline.pop(session_id, None)
        if value is None:
            return False
        k = keys.SessionKeys.of(self._prefix, session_id)
        if not await self._hand_over(keys=[k.owner, k.meta], args=[value, int(time.time() * 1000)]):
            return False
        await self._redis.zadd(self._leases, {session_id: 0})
        return True

    async def leave(self) -> None:
        """This replica drains: it leaves the live list (renewals no longer put it back), so no other
        replica hands it a session."""
        self._listed = False
        await self._redis.zrem(keys.replicas(self._prefix), self.replica_id)

    async def live_replicas(self) -> list[str]:
        """Other replicas that renewed within the lease time, which may be handed a session."""
        since = int(time.time() * 1000) - self._lease_ms
        found = await self._redis.zrangebyscore(keys.replicas(self._prefix), since, "+inf")
        return [r.decode() for r in found if r.decode() != self.replica_id]

    def forget(self, session_id: str) -> None:
        """The session was taken over (its log was fenced): it is not ours, whatever the lease says."""
        self._held.pop(session_id, None)
        self._deadline.pop(session_id, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew_forever(), name="lease-renewal")

    def renew_soon(self) -> None:
        """Redis is back (the pub/sub connection was re-established): renew now, not at the next tick."""
        self._soon.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._soon.wait()
        self._soon.clear()

    async def stop(self) -> None:
        """Stop renewing and drop this replica from the live list (its leases then run out)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(keys.replicas(self._prefix), self.replica_id)

    async def _renew_forever(self) -> None:
        interval = self._lease_ms / 3000
        retry = RETRY_S[0]
        while True:
            sent = time.monotonic()
            try:
                await self.renew()
            except (RedisError, OSError) as exc:  # the fence keeps a lease lost meanwhile safe
                if self._cut_at is None:
                    self._cut_at = sent
                    log.warning("lease renewal failed; sessions here keep running and retry (%r)", exc)
                await self._pause(min(retry, interval) * random.uniform(0.5, 1.0))
                retry = min(retry * 2, RETRY_S[1])
                continue
            if self._cut_at is not None:
                log.warning("lease renewals resumed after %.1f s", time.monotonic() - self._cut_at)
                self._cut_at = None
            retry = RETRY_S[0]
            await self._pause(interval * random.uniform(0.9, 1.0))

    async def renew(self) -> list[str]:
        """One pipeline: this replica's heartbeat and every lease it holds. Returns the sessions lost."""
        held = list(self._held.items())
        sent = time.monotonic()
        # A session Redis lost is claimed again only if this replica's lease held up to when it last
        # reached Redis: one paused past its lease may have been adopted by another before the loss.
        reached = sent if self._cut_at is None else self._cut_at
        async with self._redis.pipeline(transaction=False) as pipe:
            if self._listed:
                pipe.zadd(keys.replicas(self._prefix), {self.replica_id: int(time.time() * 1000)})
            for session_id in self._watched():
                pipe.set(keys.watched(self._prefix, session_id), self.replica_id, px=self._lease_ms)
            if held:
                expiry = int(time.time() * 1000) + self._lease_ms
                pipe.zadd(self._leases, {session_id: expiry for session_id, _ in held})
            for session_id, value in held:
                k = keys.SessionKeys.of(self._prefix, session_id)
                token = value.rpartition(":")[2]
                may_reclaim = int(reached < self._deadline.get(session_id, 0.0))
                await self._renew(
                    keys=[k.owner, k.meta, k.log, k.acks], args=[value, self._lease_ms, self._retention_s, token, may_reclaim], client=pipe,
                )
            results = await pipe.execute()
        let_go = {sid: 0 for sid, value in held if self._held.get(sid) != value}  # released or handed over meanwhile
        if let_go:  # the pipeline listed them again, as running for another lease: back to run out (or gone)
            await self._redis.zadd(self._leases, let_go, xx=True)
        renewed = results[len(results) - len(held):]
        lost, restored = [], []
        for (session_id, value), outcome in zip(held, renewed):
            if self._held.get(session_id) != value:  # released or forgotten meanwhile
                continue
            if outcome == LOST:
                lost.append(session_id)
                continue
            self._deadline[session_id] = sent + self._lease_ms / 1000
            if outcome == RETAKEN:
                log.warning("session %s: its lease ran out while Redis was unreachable; taken again", session_id)
            elif outcome in (RECLAIMED, UNREGISTERED):
                restored.append((session_id, outcome == RECLAIMED))
        for session_id in lost:
            log.error("session %s: lease lost; this replica stops writing it", session_id)
            del self._held[session_id]
            self._deadline.pop(session_id, None)
            self._on_lost(session_id)
        for session_id, log_lost in restored:
            if log_lost:
                log.warning("session %s: Redis lost its keys; claimed again, its log and registry entry are written again", session_id)
            if self._on_restored is not None:
                try:
                    await self._on_restored(session_id, log_lost)
                except (RedisError, OSError):
                    raise  # Redis failed again: the next renewal finds the entry missing and retries
                except Exception:  # a bug there must not stop the renewals every lease depends on
                    log.exception("session %s: registering it again failed", session_id)
        return lost
