"""A session's event log in Redis, written by the session's owner, read by any replica.

Invariant: after each flush the Stream `P:{sid}:log` holds, as entries `<seq>-0` (fields `f`: the
encoded frame, `t`: its time in ms), exactly what the owner's in-memory tail holds, and the meta hash's
`epoch`/`first_seq`/`last_seq`/`bytes` describe it; every entry the flush added is published on
`P:{sid}:live` in the same script, even one the tail already evicted, so other replicas' live clients
miss nothing the owner's own clients get. Retention is decided once, by the tail (a `MemoryEventLog`
with the log's bounds, evicting in 1/64 steps): the script trims the Stream to the tail's first seq, so
a cursor is refused by Redis exactly when the owner would refuse it. Every write checks the fencing
token first, inside the script: once another replica has claimed the session, this log writes nothing.

`append` is O(1) and never awaits: the entry goes to the tail (which serves the owner's own attaches
without a round trip) and to the pending queue, and wakes the one flusher task, which sends everything
pending in one EVALSHA (at most one in flight; a burst goes out in a few large batches, not per event).
An unreachable Redis costs retries with backoff in that task; the pending queue is bounded meanwhile
(the log's bounds, at least MIN_PENDING_*; past them its oldest entries are dropped and followers see
a gap they can't fill, which they report rather than hide).
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
# The pending queue holds at least this much, however small the log's bounds: only an outage fills it.
MIN_PENDING_EVENTS, MIN_PENDING_BYTES = 10_000, 32 << 20
BACKOFF_S = (0.05, 2.0)

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
# no per-entry arguments. Entries at or below last_seq are skipped, so a retried flush (its reply lost)
# adds nothing twice; the new ones are published as they came, a suffix of the joined frames.
_APPEND = """
local fence = redis.call('HGET', KEYS[2], 'fence')
if fence ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(fence)) end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0')
local seq, count, body, stamps = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
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


class RedisEventLog:
    def __init__(self, redis: Redis, keys: SessionKeys, settings: Settings, fence: int, on_fenced: Callable[[], None]) -> None:
        self.epoch = new_epoch()
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
        self._max_pending = max(settings.log_max_events, MIN_PENDING_EVENTS)
        self._max_pending_bytes = max(settings.log_max_bytes, MIN_PENDING_BYTES)
        self._flushed = 0  # the last seq Redis holds
        self._ending: bool | None = None  # set by close: None while open, else its `ended`
        self._wake = asyncio.Event()
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

    def append(self, seq: int, ts_ms: int, frame: bytes) -> None:
        self._tail.append(seq, ts_ms, frame)
        frames = self._pending_frames
        frames.append(frame)
        self._pending_stamps.append(ts_ms)
        self._pending_bytes += len(frame)
        if len(frames) > self._max_pending or self._pending_bytes > self._max_pending_bytes:
            self._drop_pending(1)
        self._wake.set()

    def _drop_pending(self, count: int) -> None:
        frames, stamps = self._pending_frames, self._pending_stamps
        for _ in range(count):
            self._pending_bytes -= len(frames.popleft())
            stamps.popleft()
        self._pending_first += count

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

    async def _flush_forever(self) -> None:
        backoff = BACKOFF_S[0]
        failing = False
        while True:
            if not self._pending_frames and self._ending is None:
                await self._wake.wait()
                self._wake.clear()
                # The SDK hands over one message per loop turn: a flush sent at once would carry one
                # or two. Letting a short window fill costs other replicas a millisecond or two and
                # saves a round trip (and Redis's per-call work) per event; the owner's own clients
                # read the tail and don't wait.
                if len(self._pending_frames) < MAX_BATCH and self._ending is None:
                    await asyncio.sleep(FLUSH_WINDOW_S)
                continue
            try:
                done = await self._flush()
            except (RedisError, OSError) as exc:  # OOM and the like are response errors too: retried
                if isinstance(exc, ResponseError) and _fenced(exc):
                    log.error("%s: fenced off (%s): another replica owns the session; this log stops writing", self._keys.log, exc)
                    self.fenced = True
                    self._on_fenced()
                    return
                if not failing:
                    log.warning("%s: Redis write failed, retrying with backoff: %r", self._keys.log, exc)
                failing = True
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            if failing:
                log.info("%s: Redis writes resumed at seq %d", self._keys.log, self._flushed)
            failing, backoff = False, BACKOFF_S[0]
            if done:
                return

    async def _flush(self) -> bool:
        """One round trip: the oldest pending entries (at most MAX_BATCH). True: closed and all written."""
        tail, frames = self._tail, self._pending_frames
        count = min(len(frames), MAX_BATCH)
        final = self._ending is not None and count == len(frames)
        ended = final and self._ending
        args = [
            self._fence, self.epoch, tail.first_seq, tail.bytes, self._closed_ttl_s if ended else self._ttl_s, int(bool(ended)),
            self._pending_first, count, b"\n".join(itertools.islice(frames, count)), " ".join(map(str, itertools.islice(self._pending_stamps, count))),
        ]
        k = self._keys
        self._flushed = int(await self._append_script(keys=[k.log, k.meta, k.acks, k.live], args=args))
        # Appends (and drops past the bound) went on meanwhile: drop what Redis now holds.
        self._drop_pending(max(0, min(len(frames), self._flushed + 1 - self._pending_first)))
        return final and not frames
