"""A session's event log in Redis, written by the session's owner, read by any replica.

Invariant: after each flush the Stream `P:{sid}:log` holds, as entries `<seq>-0` (fields `f`: the
encoded frame, `t`: its time in ms), exactly what the owner's in-memory tail holds, and the meta hash's
`epoch`/`first_seq`/`last_seq`/`bytes` describe it; every entry the flush added is published on
`P:{sid}:live` in the same script, even one the tail already evicted, so other replicas' live clients
miss nothing the owner's own clients get. Retention is decided once, by the tail (a `MemoryEventLog`
with the log's bounds, evicting in 1/64 steps): the script trims the Stream to the tail's first seq, so
a cursor is refused by Redis exactly when the owner would refuse it. Every write checks the fencing
token first, inside the script: once another replica has claimed the session, this log writes nothing.
An event is committed (shown to the owner's own clients, through `on_commit`) only once Redis holds
it, so no client ever sees an event that a replica adopting the session would not find.

`append` is O(1) and never awaits: the entry goes to the tail and to the pending queue, and wakes the
one flusher task, which sends everything pending in one EVALSHA (at most one in flight; a burst goes
out in a few large batches, not per event). An unreachable Redis costs retries with backoff in that
task; the pending queue is bounded meanwhile (`redis_buffer_events`/`_bytes`): past it its oldest
entries are dropped, and the tail with them, so the log written when Redis is back starts after them
and a client whose position falls among them gets a reset, never a gap. A Redis that came back empty
(restarted without persistence) is written again from the tail, same epoch, once the owner has
re-established its claim (`restore`); until then, like an outage, writes wait. So is one that lost only
the log's last writes (a replica promoted by a Sentinel failover, replication being asynchronous): the
script refuses a batch that does not follow the log's last seq, so no write ever leaves a hole.
"""

import asyncio
import collections
import contextlib
import itertools
import logging
import random
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway.cluster.keys import SessionKeys
from gateway.config import Settings
from gateway.events.log import MemoryEventLog, new_epoch

log = logging.getLogger("gateway.events.redis")

FLUSH_WINDOW_S = 0.002  # how long a flush waits for company once an event arrives
MAX_BATCH = 1024  # entries per flush: a long burst doesn't make one huge command
# A flush's entries reach the owner's clients at once, when Redis took them: at most this share of
# the log's events, so one commit never fills a client's send queue (a quarter of the log) by itself.
BATCH_LOG_SHARE = 8
BACKOFF_S = (0.05, 1.0)

# KEYS: log, meta. ARGV: fence, epoch, ttl s.
_CREATE = """
local fence = redis.call('HGET', KEYS[2], 'fence')
if fence ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(fence)) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'first_seq', 1, 'last_seq', 0, 'bytes', 0)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: log, meta, acks, live channel. ARGV: fence, epoch, first seq kept, bytes kept, ttl s, ended (1/0),
# then the batch: its first seq, its entry count, its frames joined by "\n" (an encoded frame has no raw
# newline) and their stamps joined by " " -- two arguments however long the batch, so the client packs
# no per-entry arguments -- and 1 when the batch starts writing the log again (Redis lost it). Entries
# at or below last_seq are skipped, so a retried flush (its reply lost) adds nothing twice; the new ones
# are published as they came, a suffix of the joined frames. No fence at all (`FENCED false`): the meta
# hash is gone (Redis lost it) until the owner claims the session again; no epoch (`NOLOG`): claimed
# again, not written again yet. A batch that would leave a hole below it (`BEHIND`: Redis lost the
# log's last writes, as a replica promoted by a failover does, and the hole is not trimmed away
# anyway) is refused: the owner writes its tail again.
_APPEND = """
local fence = redis.call('HGET', KEYS[2], 'fence')
if fence ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(fence)) end
if ARGV[11] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'last_seq', 0)
elseif not redis.call('HGET', KEYS[2], 'epoch') then
  return redis.error_reply('NOLOG')
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0')
local seq, count, body, stamps = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
if seq > last + 1 and tonumber(ARGV[3]) < seq then return redis.error_reply('BEHIND ' .. last) end
local pos, spos, new_pos, first, added = 1, 1, nil, nil, 0
for _ = 1, count do
  local nl = string.find(body, '\\n', pos, true)
  local sp = string.find(stamps, ' ', spos, true)
  if seq > last then
    local frame = nl and string.sub(body, pos, nl - 1) or string.sub(body, pos)
    local ts = sp and string.sub(stamps, spos, sp - 1) or string.sub(stamps, spos)
    redis.call('XADD', KEYS[1], seq .. '-0', 'f', frame, 't', ts)
    if not first then first, new_pos = seq, pos end
    added = added + 1
    last = seq
  end
  seq = seq + 1
  if nl then pos = nl + 1 end
  if sp then spos = sp + 1 end
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3] .. '-0')
redis.call('HSET', KEYS[2], 'last_seq', last, 'first_seq', ARGV[3], 'bytes', ARGV[4])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
if first then
  local batch = new_pos == 1 and body or string.sub(body, new_pos)
  redis.call('PUBLISH', KEYS[4], ARGV[2] .. ' ' .. first .. ' ' .. added .. '\\n' .. batch)
end
if ARGV[6] == '1' then redis.call('PUBLISH', KEYS[4], 'end') end
return last
"""

END_MARKER = b"end"


class Fenced(Exception):
    """Another replica claimed the session: its fencing token is newer than this log's."""


def _fenced(exc: ResponseError) -> bool:
    return str(exc).startswith("FENCED")


def _lost_by_redis(exc: ResponseError) -> bool:
    """Redis lost the session's keys (restarted empty): writes wait for the owner to claim it again."""
    return str(exc) == "FENCED false"


class RedisEventLog:
    deferred = True

    def __init__(self, redis: Redis, keys: SessionKeys, settings: Settings, fence: int, on_fenced: Callable[[], None]) -> None:
        self.epoch = new_epoch()
        self.on_commit: Callable[[int, list[bytes]], None] | None = None
        self._redis = redis
        self._keys = keys
        self._fence = fence
        self._on_fenced = on_fenced
        self._tail = MemoryEventLog(settings.log_max_events, settings.log_max_bytes, settings.log_max_age_s)
        self._ttl_s = int(settings.log_max_age_s + settings.idle_timeout_s) + 1
        self._closed_ttl_s = int(settings.closed_retention_s) + 1
        self._close_timeout_s = settings.redis_timeout_s * 3
        self._append_script = redis.register_script(_APPEND)
        # Entries not yet in Redis, from seq `_pending_first` on: frames and stamps apart, so a flush
        # joins each in one C-level call.
        self._pending_frames: collections.deque[bytes] = collections.deque()
        self._pending_stamps: collections.deque[int] = collections.deque()
        self._pending_first = 1
        self._pending_bytes = 0
        self._max_batch = max(64, min(MAX_BATCH, settings.log_max_events // BATCH_LOG_SHARE))
        self._max_pending = settings.redis_buffer_events
        self._max_pending_bytes = settings.redis_buffer_bytes
        self._overflowing = False  # entries were dropped since the last write: logged once
        self._rewrite = False  # the next flush writes the log again from its start (Redis lost it)
        self._flushed = 0  # the last seq Redis holds, and the owner's clients were given
        self._ending: bool | None = None  # set by close: None while open, else its `ended`
        self._wake = asyncio.Event()
        self._retry = asyncio.Event()  # cuts a backoff short: the owner claimed the session again
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []  # `committed` callers
        self._task: asyncio.Task[None] | None = None
        self.fenced = False

    @classmethod
    async def create(cls, redis: Redis, keys: SessionKeys, settings: Settings, *, fence: int, on_fenced: Callable[[], None]) -> "RedisEventLog":
        """A new log (new epoch, empty Stream) for a session this replica claimed with token `fence`."""
        event_log = cls(redis, keys, settings, fence, on_fenced)
        try:
            await redis.eval(_CREATE, 2, keys.log, keys.meta, fence, event_log.epoch, event_log._ttl_s)
        except ResponseError as exc:
            if _fenced(exc):
                raise Fenced(str(exc)) from None
            raise
        event_log._task = asyncio.create_task(event_log._flush_forever(), name=f"log-flusher-{keys.log}")
        return event_log

    @classmethod
    async def adopt(cls, redis: Redis, keys: SessionKeys, settings: Settings, *, fence: int, on_fenced: Callable[[], None]) -> "RedisEventLog":
        """The log of a session this replica took over with token `fence`: the same epoch and Stream,
        numbering going on after its last entry, the tail loaded from the Stream. The claim fenced
        the previous owner off first, so nothing is added behind this read."""
        epoch, last = await redis.hmget(keys.meta, ("epoch", "last_seq"))
        if epoch is None:  # the previous owner died before its log was created: a new one
            return await cls.create(redis, keys, settings, fence=fence, on_fenced=on_fenced)
        event_log = cls(redis, keys, settings, fence, on_fenced)
        event_log.epoch = event_log._tail.epoch = epoch.decode()
        entries = await redis.xrange(keys.log)
        tail = event_log._tail
        tail.start_at(int(entries[0][0].split(b"-")[0]) if entries else int(last or 0) + 1)
        for entry_id, fields in entries:
            tail.append(int(entry_id.split(b"-")[0]), int(fields[b"t"]), fields[b"f"])
        event_log._flushed = tail.last_seq
        event_log._pending_first = tail.last_seq + 1
        event_log._task = asyncio.create_task(event_log._flush_forever(), name=f"log-flusher-{keys.log}")
        return event_log

    @property
    def last_seq(self) -> int:
        return self._tail.last_seq

    @property
    def first_seq(self) -> int:
        return self._tail.first_seq

    @property
    def flushed_seq(self) -> int:
        """The last seq Redis holds (other replicas see up to here)."""
        return self._flushed

    @property
    def committed_seq(self) -> int:
        return self._flushed

    async def committed(self, seq: int) -> None:
        if seq <= self._flushed or self._task is None or self._task.done():
            return
        waiter = (seq, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter[1]
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def append(self, seq: int, ts_ms: int, frame: bytes) -> None:
        self._tail.append(seq, ts_ms, frame)
        frames = self._pending_frames
        frames.append(frame)
        self._pending_stamps.append(ts_ms)
        self._pending_bytes += len(frame)
        if len(frames) > self._max_pending or self._pending_bytes > self._max_pending_bytes:
            self._drop_pending(1)
            # Never written: the log goes on after it, so a cursor among the dropped is refused (reset).
            self._tail.drop_through(self._pending_first - 1)
            if not self._overflowing:
                self._overflowing = True
                log.error("%s: Redis write buffer full (%d events, %d bytes): the oldest unwritten events are dropped; "
                          "clients that have not seen them get a reset", self._keys.log, len(frames), self._pending_bytes)
        self._wake.set()

    def _drop_pending(self, count: int) -> None:
        frames, stamps = self._pending_frames, self._pending_stamps
        for _ in range(count):
            self._pending_bytes -= len(frames.popleft())
            stamps.popleft()
        self._pending_first += count

    def restore(self) -> None:
        """Redis lost the log and this replica claimed the session again: write the tail again, in the
        same epoch (clients that were given part of it resume where they are)."""
        self._rewrite = True
        self._wake.set()
        self._retry.set()

    async def read_after(self, seq: int) -> list[bytes] | None:
        """From the tail: it holds what Redis holds and what is still on its way there."""
        return self._tail.frames_after(seq)

    async def close(self, ended: bool) -> None:
        """Flush what is pending (bounded wait: an unreachable Redis loses it, logged); `ended`
        also publishes the end marker and gives the keys the closed-retention TTL."""
        task = self._task
        if task is None or self._ending is not None:
            return
        self._ending = ended
        self._wake.set()
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await asyncio.shield(task)
        except TimeoutError:
            log.error("%s: Redis unreachable at close; events after %d not written", self._keys.log, self._flushed)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._wake_waiting(all_=True)

    def _wake_waiting(self, all_: bool = False) -> None:
        still = []
        for seq, reached in self._waiting:
            if all_ or seq <= self._flushed:
                if not reached.done():
                    reached.set_result(None)
            else:
                still.append((seq, reached))
        self._waiting = still

    async def _flush_forever(self) -> None:
        backoff = BACKOFF_S[0]
        failing = False
        while True:
            if not self._pending_frames and not self._rewrite and self._ending is None:
                await self._wake.wait()
                self._wake.clear()
                # The SDK hands over one message per loop turn: a flush sent at once would carry one
                # or two. Letting a short window fill costs every client a millisecond or two and
                # saves a round trip (and Redis's per-call work) per event.
                if len(self._pending_frames) < self._max_batch and self._ending is None:
                    await asyncio.sleep(FLUSH_WINDOW_S)
                continue
            try:
                done = await self._flush()
            except (RedisError, OSError) as exc:  # OOM and the like are response errors too: retried
                if isinstance(exc, ResponseError) and _fenced(exc) and not _lost_by_redis(exc):
                    log.error("%s: fenced off (%s): another replica owns the session; this log stops writing", self._keys.log, exc)
                    self.fenced = True
                    self._wake_waiting(all_=True)
                    self._on_fenced()
                    return
                if isinstance(exc, ResponseError) and str(exc) == "NOLOG":  # claimed again: write it all again
                    self._rewrite = True
                    continue
                if isinstance(exc, ResponseError) and str(exc).startswith("BEHIND"):  # lost its last writes
                    log.warning("%s: Redis holds the log up to seq %s, written up to %d before: writing it again",
                                self._keys.log, str(exc).split()[1], self._flushed)
                    self._rewrite = True
                    continue
                if not failing:
                    log.warning("%s: Redis write failed, buffering and retrying with backoff: %r", self._keys.log, exc)
                failing = True
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff * random.uniform(0.5, 1.0)):
                        await self._retry.wait()
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            if failing:
                log.warning("%s: Redis writes resumed; written up to seq %d", self._keys.log, self._flushed)
            failing, backoff, self._overflowing = False, BACKOFF_S[0], False
            if done:
                return

    async def _flush(self) -> bool:
        """One round trip: the oldest pending entries (at most `_max_batch`), then the ones Redis took
        committed. True: closed and all written."""
        tail = self._tail
        if self._rewrite:  # everything the tail holds goes again (a retry after a lost reply too)
            frames, stamps = tail.entries_after(0)
            self._pending_frames, self._pending_stamps = collections.deque(frames), collections.deque(stamps)
            self._pending_first, self._pending_bytes = tail.first_seq, tail.bytes
        frames = self._pending_frames
        count = min(len(frames), self._max_batch)
        final = self._ending is not None and count == len(frames)
        ended = final and self._ending
        first, batch = self._pending_first, list(itertools.islice(frames, count))
        args = [
            self._fence, self.epoch, tail.first_seq, tail.bytes, self._closed_ttl_s if ended else self._ttl_s, int(bool(ended)),
            first, count, b"\n".join(batch), " ".join(map(str, itertools.islice(self._pending_stamps, count))), int(self._rewrite),
        ]
        k = self._keys
        last = int(await self._append_script(keys=[k.log, k.meta, k.acks, k.live], args=args))
        self._rewrite = False
        # Entries written again after Redis lost them were committed before: not given twice.
        start = max(self._flushed + 1, first)
        self._flushed = max(self._flushed, last)
        if last >= start and self.on_commit is not None:
            self.on_commit(start, batch[start - first:last + 1 - first])
        if self._waiting:
            self._wake_waiting()
        # Appends (and drops past the bound) went on meanwhile: drop what Redis now holds.
        self._drop_pending(max(0, min(len(frames), last + 1 - self._pending_first)))
        return final and not frames
