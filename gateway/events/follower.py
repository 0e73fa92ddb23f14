"""Another replica's view of one session's event log: the Stream for replay, the live channel for the tail.

Invariant: the follower's sinks get every event after `last_seq` exactly once, in seq order, with no
gap. A live batch that starts above `last_seq + 1` (a pub/sub message was lost, or the hub
reconnected) is held while the gap is read from the Stream, then delivered in order; a batch at or
below `last_seq` is dropped. When the gap can't be read any more (trimmed, or the log was replaced
by a new epoch) the sinks are ended rather than given a hole: their clients resume and get a reset.
The sinks end on the log's end marker, or when a read after a reconnect finds the session closed.
A log missing from Redis while the follower fills a gap (Redis restarted empty) is waited for, up to
RESTORE_WAIT_S, while its owner claims the session again and writes the log again in the same epoch.
"""

import asyncio
import contextlib
import logging
import random

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster.keys import SessionKeys
from gateway.events.feed import Sink, buffered_attach
from gateway.events.redis_log import END_MARKER
from gateway.store.pubsub import PubSubHub

log = logging.getLogger("gateway.events.follower")

READ_CHUNK = 2000  # Stream entries per read
# A cursor from another replica's client can be ahead of what this follower has received yet (every
# client gets an event once it is written, but the live message takes its time to get here); an
# attach waits this long for the follower to get there, not a reset.
CATCH_UP_S = 1.0
BACKOFF_S = (0.05, 1.0)
RESTORE_WAIT_S = 15.0  # a gone log is waited for this long (its owner renews every lease_ttl_s / 3) before it counts as lost

# KEYS: log. ARGV: the seq to read after, at most how many. Returns the first seq read (0: none) and
# the frames joined by "\n": one bulk string, split in C, instead of a parsed reply per entry.
_READ = """
local entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
if #entries == 0 then return {0, ''} end
local frames = {}
for i, entry in ipairs(entries) do frames[i] = entry[2][2] end
return {tonumber((string.gsub(entries[1][1], '-0$', ''))), table.concat(frames, '\\n')}
"""


class LogGone(Exception):
    """The session has no log in Redis (never opened, or expired)."""


class LogFollower:
    def __init__(self, redis: Redis, hub: PubSubHub, keys: SessionKeys) -> None:
        self._redis = redis
        self._hub = hub
        self._keys = keys
        self._read = redis.register_script(_READ)
        self.epoch = ""
        self._last = 0
        self._sinks: set[Sink] = set()
        self._held: list[tuple[int, list[bytes]]] = []  # live batches waiting behind a gap (or the start)
        self._filling: asyncio.Task[None] | None = None
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []  # attaches waiting for a seq
        self._started = False
        self.ended = False
        self.session_closed = False  # it ended because the session closed (not on a gap)

    @classmethod
    async def start(cls, redis: Redis, hub: PubSubHub, keys: SessionKeys) -> "LogFollower":
        """Subscribe to the live channel first, then read where the log stands: no batch falls between."""
        follower = cls(redis, hub, keys)
        await hub.subscribe(keys.live, follower._on_live, follower._on_resubscribed)
        try:
            epoch, last, state = await redis.hmget(keys.meta, "epoch", "last_seq", "state")
            if epoch is None:
                raise LogGone(f"no event log at {keys.meta}")
        except BaseException:
            await hub.unsubscribe(keys.live)
            raise
        follower.epoch, follower._last, follower._started = epoch.decode(), int(last), True
        held, follower._held = follower._held, []
        for first, frames in held:
            follower._take(first, frames)
        if state == b"closed":
            follower._fill()  # the end marker may be gone already: the read after it ends the sinks
        return follower

    async def close(self) -> None:
        """Stop following (no sink left, or the replica shuts down)."""
        await self._hub.unsubscribe(self._keys.live)
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling

    @property
    def last_seq(self) -> int:
        return self._last

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        """Subscribe `sink` and return the frames after `after` from the Stream (None: can't be served in full).

        A cursor ahead of what the follower has seen waits for it (up to CATCH_UP_S) before it is refused.
        """
        if after > self._last and not self.ended:
            waiter = (after, asyncio.get_running_loop().create_future())
            self._waiting.append(waiter)
            try:
                async with asyncio.timeout(CATCH_UP_S):
                    await waiter[1]
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        frames = await buffered_attach(self._sinks, sink, after, lambda: self._last, self._read_after)
        if self.ended:  # during the wait (the session closed, or a gap it can't fill): nothing more reaches the sink
            self._sinks.discard(sink)
        return frames

    def subscribe(self, sink: Sink) -> None:
        """Deliver to `sink` from now on; one subscribed once the follower ended is ended at once."""
        if self.ended:
            sink.end()
            return
        self._sinks.add(sink)

    def detach(self, sink: Sink) -> None:
        self._sinks.discard(sink)

    def end(self, closed: bool = True) -> None:
        self.ended = True
        self.session_closed = closed
        for sink in list(self._sinks):
            sink.end()
        self._sinks.clear()
        self._wake_waiting()

    # ---- live ------------------------------------------------------------------------------

    def _on_live(self, message: bytes) -> None:
        if message == END_MARKER:
            if self._filling is None and self._started:
                self.end()
            else:  # after the held batches, once the gap is filled
                self._held.append((0, []))
            return
        header, _, body = message.partition(b"\n")
        epoch, first, count = header.split(b" ")
        frames = body.split(b"\n")
        if len(frames) != int(count):
            log.error("%s: malformed live batch (%s frames, header says %s)", self._keys.live, len(frames), count)
            self._fill()
            return
        if self._started and epoch.decode() != self.epoch:
            self._lost(f"the log was replaced (epoch {epoch.decode()})")
            return
        if self._filling is not None or not self._started:
            self._held.append((int(first), frames))
            return
        self._take(int(first), frames)

    def _take(self, first: int, frames: list[bytes]) -> None:
        """Deliver a batch in order, or hold it and read the gap before it."""
        if not frames:  # the end marker, in order behind the batches before it
            self.end()
            return
        if first > self._last + 1:
            self._held.append((first, frames))
            self._fill()
            return
        self._deliver(frames[self._last + 1 - first:])

    def _deliver(self, frames: list[bytes]) -> None:
        sinks = self._sinks
        for frame in frames:
            for sink in sinks:
                sink.push(frame)
        self._last += len(frames)
        if self._waiting:
            self._wake_waiting()

    def _wake_waiting(self) -> None:
        still = []
        for seq, reached in self._waiting:
            if seq <= self._last or self.ended:
                if not reached.done():
                    reached.set_result(None)
            else:
                still.append((seq, reached))
        self._waiting = still

    def _on_resubscribed(self) -> None:
        """Messages may have been lost while the connection was down: read the Stream from `last_seq`."""
        self._fill()

    # ---- reading the Stream ----------------------------------------------------------------

    def _fill(self) -> None:
        if self._filling is None and not self.ended:
            self._filling = asyncio.create_task(self._fill_gap(), name=f"log-gap-{self._keys.log}")

    async def _fill_gap(self) -> None:
        """Read the Stream after `last_seq` (retrying while Redis is away), deliver it, then the held batches."""
        backoff = BACKOFF_S[0]
        failing, gone_until = False, asyncio.get_running_loop().time() + RESTORE_WAIT_S
        while True:
            try:
                epoch, state = await self._redis.hmget(self._keys.meta, "epoch", "state")
                if epoch is None and asyncio.get_running_loop().time() < gone_until:
                    raise LogGone("not written again yet")
                frames = await self._read_after(self._last) if epoch is not None and epoch.decode() == self.epoch else None
                break
            except (RedisError, OSError, LogGone) as exc:
                if not failing:
                    log.warning("%s: reading the gap failed, retrying: %r", self._keys.log, exc)
                failing = True
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_S[1])
        self._filling = None
        if frames is None:
            self._lost(f"events after {self._last} are no longer in the log")
            return
        self._deliver(frames)
        held, self._held = self._held, []
        for first, batch in held:
            if self.ended or self._filling is not None:  # another gap: held again behind it
                self._held.append((first, batch))
            else:
                self._take(first, batch)
        if state == b"closed" and self._filling is None and not self.ended:
            self.end()

    async def _read_after(self, seq: int) -> list[bytes] | None:
        """The Stream's frames after `seq`, up to its top; None when some of them were trimmed."""
        frames: list[bytes] = []
        while True:
            first, joined = await self._read(keys=[self._keys.log], args=[seq + len(frames), READ_CHUNK])
            if not first:
                return frames
            if first != seq + 1 + len(frames):
                return None
            chunk = joined.split(b"\n")
            frames += chunk
            if len(chunk) < READ_CHUNK:
                return frames

    def _lost(self, why: str) -> None:
        log.error("%s: follower can't continue without a gap (%s); its clients resume", self._keys.log, why)
        self.end(closed=False)
