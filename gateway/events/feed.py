"""Numbers events, encodes each once, logs it and hands the bytes to every attached sink."""

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

    def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        """Subscribe `sink` and return the frames after `after` (None: can't be served in full).

        Reading the log and subscribing happen with no await between them, so the
        replay and the live tail meet exactly: nothing lost, nothing twice.
        """
        if after > self.log.last_seq:
            return None
        frames = self.log.read_after(after)
        if frames is not None:
            self._sinks.add(sink)
        return frames

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
