"""Numbers events, encodes each once, logs it and hands the bytes to every attached sink once the
log has committed it (at once in memory; once written, for a shared store).

An attach may await its log read: the sink is subscribed (to a buffer) before the read and switched
to direct delivery after the merge, so replay and live tail meet exactly whatever the read awaits.
Sinks are given committed events only, in order, without a gap: when the log lost events it never
committed (a store's write buffer overflowed), the sinks are ended instead, and their clients resume
into a reset.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from gateway.events.log import EventLog
from gateway.wire.events import EventBody
from gateway.wire.server import EventFrame

_encode = msgspec.json.Encoder().encode


class Sink(Protocol):
    """A consumer of encoded frames; `push` must not block or await (it runs on the hot path)."""

    def push(self, frame: bytes) -> None: ...

    def end(self) -> None:
        """The feed is over (the session closed): deliver what is queued, then finish."""
        ...


class Feed(Protocol):
    """What a session's clients attach to: the owner's `EventFeed`, or another replica's follower of it."""

    @property
    def epoch(self) -> str: ...

    @property
    def last_seq(self) -> int: ...

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None: ...

    def subscribe(self, sink: Sink) -> None: ...

    def detach(self, sink: Sink) -> None: ...

    def end(self) -> None: ...


class Pending:
    """Stands in for a sink while its replay is read: keeps the live frames, numbered from `first_seq`."""

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.frames: list[bytes] = []
        self.ended = False  # the feed ended while the replay was read

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)

    def end(self) -> None:
        self.ended = True

    def merge(self, replay: list[bytes], after: int) -> list[bytes] | None:
        """The replay of the frames after `after`, then the buffered ones it doesn't hold; None when
        the replay ends short of them (a store that lost its newest writes: can't be served)."""
        skip = after + len(replay) + 1 - self.first_seq
        if skip < 0:
            return None
        return replay + self.frames[skip:] if skip < len(self.frames) else replay


async def buffered_attach(
    sinks: set[Sink], sink: Sink, after: int, top: Callable[[], int], read: Callable[[int], Awaitable[list[bytes] | None]]
) -> list[bytes] | None:
    """Subscribe `sink` to `sinks` (delivered up to `top()`) and return the frames after `after`.

    Frames delivered while `read` awaits are buffered and appended to the replay (those it already
    holds are dropped by seq), and the replay stops at what the sinks were given (a store may hold
    more: the sink gets it live, in order); the sink gets direct delivery only once this returns,
    so the caller queues the replay first: nothing lost, nothing twice. When the sinks were ended
    meanwhile (the session closed) the replay is returned without subscribing the sink.
    """
    if after > top():
        return None
    pending = Pending(top() + 1)
    sinks.add(pending)
    try:
        frames = await read(after)
    finally:
        sinks.discard(pending)
    merged = None if frames is None else pending.merge(frames, after)
    if merged is None:
        return None
    del merged[top() - after:]
    if not pending.ended:
        sinks.add(sink)
    return merged


class EventFeed:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._sinks: set[Sink] = set()
        self.last_ts = 0  # unix ms of the last event
        self._deferred = log.deferred
        self._given = log.committed_seq  # the last seq the sinks were given (deferred log)
        if log.deferred:
            log.on_commit = self._committed

    @property
    def epoch(self) -> str:
        return self.log.epoch

    @property
    def last_seq(self) -> int:
        return self.log.last_seq

    def emit(self, event: EventBody) -> int:
        seq = self.log.last_seq + 1
        ts = self.last_ts = int(time.time() * 1000)
        frame = _encode(EventFrame(seq=seq, epoch=self.log.epoch, ts=ts, event=event))
        self.log.append(seq, ts, frame)
        if not self._deferred:
            for sink in self._sinks:
                sink.push(frame)
        return seq

    def _committed(self, first: int, frames: list[bytes]) -> None:
        if first != self._given + 1:
            self.end()  # lost before they were written: no sink is given a gap
        self._given = first + len(frames) - 1
        sinks = self._sinks
        for frame in frames:
            for sink in sinks:
                sink.push(frame)

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        """Subscribe `sink` and return the committed frames after `after` (None: can't be served in
        full); see `buffered_attach`."""
        return await buffered_attach(self._sinks, sink, after, lambda: self.log.committed_seq, self.log.read_after)

    def subscribe(self, sink: Sink) -> None:
        self._sinks.add(sink)

    def detach(self, sink: Sink) -> None:
        self._sinks.discard(sink)

    def end(self) -> None:
        for sink in list(self._sinks):
            sink.end()
        self._sinks.clear()

    @property
    def sink_count(self) -> int:
        return len(self._sinks)
