"""A per-connection send queue that coalesces: a lagging client gets many frames per send.

Pushing is O(1) and never awaits; one sender drains it. An idle connection's
frame goes out at once; one arriving less than a flush window after the last send waits for the
window's end, with whatever else comes meanwhile (up to `linger_frames`), so a paced stream costs
a wake-up and a send per window, not per frame, and no frame waits much longer than the window. An Outbox belongs to
the event loop it was made in (its burst watcher runs there). The queue is bounded in bytes and
in frames: past either bound the connection is marked slow and dropped, so a stalled reader can't
grow the gateway's memory. A connection's bounds are a fraction of its session log's, so the
client it drops still finds its cursor in the log and resumes without loss.

An empty Outbox holds no buffer block and no waiter (thousands of idle connections each hold one):
the queue is a list, and `take` makes its waiter only while it waits. `on_wake` tells the owner
when an empty outbox gets something to deliver, so a sender need exist only while there is.
`on_ready` tells it, when no `take` waits, that a batch may go now: an owner that can write
without waiting takes it with `take_ready`, so a paced stream's frame costs one loop callback, not
a task and its wake-ups (the WebSocket transport, when the server offers that write). It is called
at the end of the loop turn that made the batch ready, so what that turn produces shares the send.
"""

import asyncio
from collections.abc import Callable

from gateway.config import Settings

# A dropped client is at most this share of the log's bounds behind (plus the batch being sent);
# the rest of the log is the room it has to come back in while the session goes on.
LOG_SHARE = 4
# Below this a healthy reader would be dropped for the bursts it normally gets: a log that small
# (under 1,024 events) can't promise a resume anyway.
MIN_FRAMES = 256


class SlowConsumer(Exception):
    """The client fell further behind than the send queue allows."""


class Outbox:
    __slots__ = (
        "_loop", "_frames", "_bytes", "_replay_frames", "_replay_bytes", "_max_bytes", "_max_frames", "_max_batch_frames",
        "_max_batch_bytes", "_linger_frames", "_watching", "_seen", "_window", "_sent_at", "_timer", "_waiter",
        "_ready_soon", "on_overflow", "on_wake", "on_ready", "overflowed", "ended",
    )

    def __init__(
        self,
        max_bytes: int,
        max_frames: int | None = None,
        max_batch_frames: int = 512,
        max_batch_bytes: int = 1 << 20,
        linger_frames: int = 64,
        flush_window_s: float = 0.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()  # looked up once: get_running_loop costs a getpid() per call
        self._frames: list[bytes] = []
        self._bytes = 0  # the live backlog, which the bound applies to
        # The head of the queue that is the replay (and the attach reply before it): not held to the bound.
        self._replay_frames = self._replay_bytes = 0
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._max_batch_frames = max_batch_frames
        self._max_batch_bytes = max_batch_bytes
        self._linger_frames = linger_frames
        self._watching = False  # the sender waits: for a flush window's end, then while a burst arrives
        self._seen = 0
        self._window = flush_window_s  # 0: no window, every frame waits for the burst watcher
        self._sent_at = -flush_window_s  # when the last batch left (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None  # `take` waiting: for frames, or a window's end
        self._ready_soon = False  # `on_ready` is due at this loop turn's end
        # Called once, on overflow: a sender stuck on a stalled peer can't notice by itself.
        self.on_overflow: Callable[[], None] | None = None
        # Called when an empty outbox gets a frame, or is ended: something to deliver (a sender may be needed).
        self.on_wake: Callable[[], None] | None = None
        # Called when a batch may go now and no `take` waits for it (see `take_ready`).
        self.on_ready: Callable[[], None] | None = None
        self.overflowed = False  # the same fact as a plain attribute: `push` reads it per frame
        self.ended = False

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        if self.overflowed or self.ended:
            return
        frames = self._frames
        frames.append(frame)
        self._bytes += len(frame)
        if len(frames) == 1 and self.on_wake is not None:
            self.on_wake()
        # The bounds are on backlog: one frame larger than the bound on its own still goes out.
        if (self._bytes > self._max_bytes or self._over_frames()) and len(frames) > 1:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            self._frames = []  # nothing more will be sent on this connection; free it now
            self._bytes = self._replay_frames = self._replay_bytes = 0
            self._signal()
        elif not self._watching:
            if not self._window:
                self._watching = True
                self._seen = -1  # the first turn is a grace turn: the producer runs after the watcher
                self._loop.call_soon(self._watch)
            elif self._loop.time() - self._sent_at < self._window:
                self._watching = True
                self._timer = self._loop.call_at(self._sent_at + self._window, self._window_end)
            else:
                self._signal()  # idle: no reason to wait
        elif self._timer is not None and len(frames) >= self._linger_frames:
            self._timer.cancel()
            self._window_end()  # a full batch need not wait for the window's end

    def _over_frames(self) -> bool:
        return self._max_frames is not None and len(self._frames) - self._replay_frames > self._max_frames

    def _window_end(self) -> None:
        """The flush window is over: the frames go, unless a burst is still arriving (then the watcher
        decides, as for a connection with no window)."""
        self._timer = None
        self._seen = len(self._frames)
        self._loop.call_soon(self._watch)

    def _watch(self) -> None:
        """Once per loop turn while frames keep arriving: wake the sender when a turn brings none,
        or a batch is full. One callback per turn, not a sender wake-up per frame; no timer."""
        count = len(self._frames)
        if count > self._seen and count < self._linger_frames and not self.ended:
            self._seen = count
            self._loop.call_soon(self._watch)
            return
        self._watching = False
        self._signal()

    def _signal(self) -> None:
        """Wake `take` if it waits; else tell `on_ready` that a batch may go now."""
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self.on_ready is not None and not self._ready_soon:
            self._ready_soon = True
            self._loop.call_soon(self._ready)

    def _ready(self) -> None:
        self._ready_soon = False
        if self.on_ready is not None and self._frames and not self._watching and not self.overflowed and not self.ended:
            self.on_ready()

    def push_many(self, frames: list[bytes]) -> None:
        """Queue a replay (once per connection, right after its attach). Not held to the bound, nor
        counted in the backlog that is: the event log that produced it is bounded already."""
        self._frames.extend(frames)
        self._replay_frames = len(self._frames)  # with the attach reply and anything else before it
        self._replay_bytes = self._bytes + sum(map(len, frames))
        self._bytes = 0
        self._signal()
        if self._frames and self.on_wake is not None:
            self.on_wake()

    def end(self) -> None:
        self.ended = True
        self._watching = False  # what is queued goes now
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._signal()
        if self.on_wake is not None:
            self.on_wake()

    async def take(self) -> list[bytes]:
        """Wait for frames and return a batch; [] once ended and drained. Raises SlowConsumer.

        While a burst is arriving (the SDK hands over one message per loop turn) the sender waits
        for the watcher, so the burst leaves in sends of many frames. Without a flush window a lone
        event waits two turns; with one, an idle connection's event none, a paced one the window's rest.
        """
        while not self._frames or self._watching:
            if self.overflowed:
                raise SlowConsumer
            if self.ended and not self._frames:
                return []
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self._frames:  # the watcher's signal: send now, even if the next burst has begun
                break
        if self.overflowed:
            raise SlowConsumer
        return self._batch()

    def take_ready(self) -> list[bytes]:
        """The batch that may go now, without waiting: [] while a window or a burst holds it back
        (`on_ready` is called when it may go), once overflowed, or when there is none."""
        if not self._frames or self._watching or self.overflowed:
            return []
        return self._batch()

    def _batch(self) -> list[bytes]:
        """Take the next batch (there is one): everything queued, up to the batch bounds."""
        self._sent_at = self._loop.time()
        frames = self._frames
        if len(frames) <= self._max_batch_frames and self._bytes + self._replay_bytes <= self._max_batch_bytes:
            self._frames = []
            self._bytes = self._replay_frames = self._replay_bytes = 0
            return frames
        count = size = 0
        while count < len(frames) and count < self._max_batch_frames and size < self._max_batch_bytes:
            frame = frames[count]
            count += 1
            size += len(frame)
            if self._replay_frames:
                self._replay_frames -= 1
                self._replay_bytes -= len(frame)
            else:
                self._bytes -= len(frame)
        batch = frames[:count]
        del frames[:count]
        return batch


def connection_outbox(settings: Settings) -> Outbox:
    """A client connection's outbox: `send_queue_bytes`, and at most a `LOG_SHARE`th of the session
    log's event and byte bounds, so that a client dropped for lagging can resume (4008)."""
    return Outbox(
        min(settings.send_queue_bytes, settings.log_max_bytes // LOG_SHARE),
        max_frames=max(MIN_FRAMES, settings.log_max_events // LOG_SHARE),
        flush_window_s=settings.send_flush_window_ms / 1000,
    )
