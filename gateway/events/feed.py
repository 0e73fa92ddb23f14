"""Numbers events, encodes each once, logs it and hands the bytes to every attached sink.

An attach may await its log read: the sink is subscribed (to a buffer) before the read and switched
to direct delivery after the merge, so replay and live tail meet exactly whatever the read awaits.
"""

import time
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

    def merge(self, replay: list[bytes], after: int) -> list[bytes]:
        """The replay of the frames after `after`, then the buffered ones it doesn't hold."""
        skip = after + len(replay) + 1 - self.first_seq
        if skip < 0:
            raise AssertionError(f"replay ends at {after + len(replay)}, live frames start at {self.first_seq}")
        return replay + self.frames[skip:] if skip < len(self.frames) else replay


class EventFeed:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._sinks: set[Sink] = set()
        self.last_ts = 0  # unix ms of the last event

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
        for sink in self._sinks:
            sink.push(frame)
        return seq

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        """Subscribe `sink` and return the frames after `after` (None: can't be served in full).

        Events emitted while the log is read are buffered and appended to the replay (those it
        already holds are dropped by seq); the sink gets direct delivery only once this returns,
        so the caller queues the replay first: nothing lost, nothing twice. A feed that ended
        meanwhile returns its last frames without subscribing the sink (the session is closed).
        """
        if after > self.log.last_seq:
            return None
        pending = Pending(self.log.last_seq + 1)
        self._sinks.add(pending)
        try:
            frames = await self.log.read_after(after)
        finally:
            self._sinks.discard(pending)
        if frames is None:
            return None
        if not pending.ended:
            self._sinks.add(sink)
        return pending.merge(frames, after)

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
