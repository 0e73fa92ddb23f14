"""Event log storage. The in-memory log is the default; a shared store plugs in behind `EventLog`.

Appends are synchronous and O(1) (they run on the hot path, once per event); reads and closing are
async, so a log backed by a store can await it without the feed or the transports caring which it is.
An event is *committed* once it is where any replica that takes the session over finds it: at once
in memory; once written for a shared store (`deferred`), which then hands the committed frames to
`on_commit`. Clients are shown committed events only, so no client ever holds an event that a
replica taking the session over would not have.
"""

import secrets
import time
from collections.abc import Callable
from typing import ClassVar, Protocol


def new_epoch() -> str:
    """An epoch names one incarnation of a log; positions from another epoch are void."""
    return secrets.token_hex(4)


class EventLog(Protocol):
    """Append-only storage of encoded event frames, numbered from 1 without gaps."""

    epoch: str
    deferred: ClassVar[bool]
    """False: an appended event is committed at once. True: later, handed to `on_commit`."""
    on_commit: Callable[[int, list[bytes]], None] | None
    """Set by the feed of a deferred log: called with (first seq, frames) as frames are committed;
    a first seq past the previous call's last + 1 means the frames between were lost (never written)."""

    @property
    def last_seq(self) -> int: ...

    @property
    def committed_seq(self) -> int:
        """The last seq a client may be shown."""
        ...

    async def committed(self, seq: int) -> None:
        """Return once every event up to `seq` is committed (or the log is closed)."""
        ...

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still held (last_seq + 1 when empty)."""
        ...

    def append(self, seq: int, ts_ms: int, frame: bytes) -> None:
        """Log the next frame (`seq` is `last_seq + 1`); never awaits."""
        ...

    async def read_after(self, seq: int) -> list[bytes] | None:
        """Frames with sequence numbers above `seq`, or None when some of them were evicted."""
        ...

    async def close(self, ended: bool) -> None:
        """Write out what is still pending; `ended`: the session is over (its log is kept for retention only)."""
        ...


class MemoryEventLog:
    """A bounded list with a moving head: O(1) amortised append and eviction, O(k) replay.

    Retention is by count, by bytes and by age; all three apply. A crossed count or byte bound
    evicts down to 1/64 below it, so a log that sits at its bound (every long session) evicts once
    per ~1/64 of its size instead of on every append.
    """

    deferred: ClassVar[bool] = False

    def __init__(self, max_events: int, max_bytes: int, max_age_s: float) -> None:
        self.epoch = new_epoch()
        self.on_commit: Callable[[int, list[bytes]], None] | None = None
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._frames: list[bytes] = []
        self._stamps: list[int] = []
        self._head = 0  # index of the oldest live entry
        self._first_seq = 1
        self._bytes = 0

    @property
    def last_seq(self) -> int:
        return self._first_seq + len(self._frames) - self._head - 1

    @property
    def committed_seq(self) -> int:
        return self.last_seq

    async def committed(self, seq: int) -> None:
        """Everything in memory is committed."""

    @property
    def first_seq(self) -> int:
        return self._first_seq

    def __len__(self) -> int:
        return len(self._frames) - self._head

    def start_at(self, seq: int) -> None:
        """An empty log takes over a numbering begun elsewhere (an adopted session): `seq` comes next."""
        if len(self):
            raise ValueError("only an empty log can start at another seq")
        self._first_seq = seq

    def append(self, seq: int, ts_ms: int, frame: bytes) -> None:
        frames = self._frames
        if seq != self._first_seq + len(frames) - self._head:
            raise ValueError(f"out-of-order append: {seq} after {self.last_seq}")
        frames.append(frame)
        self._stamps.append(ts_ms)
        self._bytes += len(frame)
        head = self._head
        if len(frames) - head > self._max_events or self._bytes > self._max_bytes or self._stamps[head] < ts_ms - self._max_age_ms:
            self._evict(ts_ms)

    async def read_after(self, seq: int) -> list[bytes] | None:
        return self.frames_after(seq)

    def frames_after(self, seq: int) -> list[bytes] | None:
        """`read_after` without the coroutine, for callers that hold the log in memory."""
        if seq + 1 < self._first_seq:
            return None
        start = self._head + (seq + 1 - self._first_seq)
        return self._frames[start:]

    def entries_after(self, seq: int) -> tuple[list[bytes], list[int]]:
        """The frames after `seq` (from the first held when `seq` is older) and their stamps."""
        start = self._head + max(0, seq + 1 - self._first_seq)
        return self._frames[start:], self._stamps[start:]

    def drop_through(self, seq: int) -> None:
        """Evict every entry up to `seq` (the newest stays: see `_evict`)."""
        head, newest = self._head, len(self._frames) - 1
        stop = min(newest, head + seq + 1 - self._first_seq)
        while head < stop:
            self._bytes -= len(self._frames[head])
            head += 1
        self._first_seq += head - self._head
        self._head = head

    @property
    def bytes(self) -> int:
        return self._bytes

    async def close(self, ended: bool) -> None:
        """Nothing is pending in memory."""

    def _evict(self, now_ms: int) -> None:
        oldest_allowed = now_ms - self._max_age_ms
        keep_events = self._max_events - self._max_events // 64
        keep_bytes = self._max_bytes - self._max_bytes // 64
        frames, stamps, head = self._frames, self._stamps, self._head
        newest = len(frames) - 1  # always kept, so a live cursor can be checked against the top
        while head < newest and (
            len(frames) - head > keep_events or self._bytes > keep_bytes or stamps[head] < oldest_allowed
        ):
            self._bytes -= len(frames[head])
            head += 1
        self._first_seq += head - self._head
        if head > 1024 and head * 2 > len(frames):
            del frames[:head]
            del stamps[:head]
            head = 0
        self._head = head

    def expire(self, now_ms: int | None = None) -> None:
        """Apply age retention without an append (called by the reaper on quiet sessions)."""
        self._evict(int(time.time() * 1000) if now_ms is None else now_ms)
