"""Property tests: replay + live from any cursor is contiguous and duplicate-free, or explicitly refused."""

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events.feed import EventFeed
from gateway.events.log import MemoryEventLog
from gateway.wire.events import StateChanged, Stream
from tests.support.event_logs import Recorder




ops = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.integers(1, 30)),
        st.tuples(st.just("attach"), st.integers(0, 400)),
        st.tuples(st.just("detach"), st.integers(0, 20)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, max_events=st.integers(1, 50), max_bytes=st.integers(200, 20_000))
def test_replay_then_live_is_exact(ops: list[tuple[str, int]], max_events: int, max_bytes: int) -> None:
    log = MemoryEventLog(max_events=max_events, max_bytes=max_bytes, max_age_s=3600)
    feed = EventFeed(log)
    subscribers: list[tuple[int, Recorder]] = []
    for op, arg in ops:
        if op == "emit":
            for i in range(arg):
                feed.emit(Stream(event={"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x" * (i % 7)}}))
        elif op == "attach":
            after = arg
            sink = Recorder()
            replay = asyncio.run(feed.attach(sink, after))
            if replay is None:
                # Refused only when the cursor is beyond the top or events after it were evicted.
                assert after > log.last_seq or after + 1 < log.first_seq
                assert sink not in feed._sinks
            else:
                assert log.first_seq <= after + 1 and after <= log.last_seq
                sink.frames.extend(replay)
                subscribers.append((after, sink))
        elif subscribers:
            _, sink = subscribers.pop(arg % len(subscribers))
            feed.detach(sink)
    for after, sink in subscribers:
        assert sink.seqs() == list(range(after + 1, log.last_seq + 1))
    # The log never holds more than its bounds (but always the newest event).
    assert len(log) <= max(1, max_events)
    if log.last_seq:
        assert len(log) >= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.integers(1, 5000))
def test_age_retention_refuses_old_cursors(count: int, age_ms: int) -> None:
    log = MemoryEventLog(max_events=10_000, max_bytes=1 << 30, max_age_s=age_ms / 1000)
    for seq in range(1, count + 1):
        log.append(seq, seq * 10, b"{}")
    oldest_kept = log.first_seq
    assert log.frames_after(oldest_kept - 1) is not None
    if oldest_kept > 1:
        assert log.frames_after(oldest_kept - 2) is None
    assert all(ts >= count * 10 - age_ms for ts in log._stamps[log._head:]) or len(log) == 1


@settings(max_examples=100, deadline=None)
@given(max_events=st.integers(1, 2000), appends=st.integers(1, 6000))
def test_count_retention_keeps_all_but_the_oldest_64th(max_events: int, appends: int) -> None:
    """A log at its count bound evicts in steps of 1/64, never below 63/64 of the bound."""
    log = MemoryEventLog(max_events=max_events, max_bytes=1 << 30, max_age_s=3600)
    for seq in range(1, appends + 1):
        log.append(seq, 1000, b"{}")
        assert min(seq, max_events - max_events // 64) <= len(log) <= max_events
    assert log.frames_after(appends - len(log)) is not None


def test_epoch_changes_per_log() -> None:
    assert MemoryEventLog(10, 1000, 10).epoch != MemoryEventLog(10, 1000, 10).epoch


async def test_end_reaches_every_sink() -> None:
    feed = EventFeed(MemoryEventLog(10, 10_000, 10))
    sinks = [Recorder() for _ in range(3)]
    for s in sinks:
        await feed.attach(s, 0)
    feed.emit(StateChanged(state="closed"))
    feed.end()
    assert all(s.ended and s.seqs() == [1] for s in sinks)
    assert feed.sink_count == 0


class SlowLog(MemoryEventLog):
    """A log whose reads take `turns` loop turns, reading what it holds when they start or when they end
    (a store answers with what it held when the command ran): events are emitted during the read."""

    def __init__(self, turns: int, read_at_start: bool, max_events: int) -> None:
        super().__init__(max_events=max_events, max_bytes=1 << 30, max_age_s=3600)
        self.turns = turns
        self.read_at_start = read_at_start

    async def read_after(self, seq: int) -> list[bytes] | None:
        frames = self.frames_after(seq) if self.read_at_start else None
        for _ in range(self.turns):
            await asyncio.sleep(0)
        return frames if self.read_at_start else self.frames_after(seq)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.one_of(st.tuples(st.just("emit"), st.integers(1, 5)), st.tuples(st.just("attach"), st.integers(0, 60)), st.tuples(st.just("turn"), st.integers(1, 4))), max_size=50),
    turns=st.integers(0, 5),
    read_at_start=st.booleans(),
    max_events=st.integers(5, 80),
    end_at=st.integers(0, 60),
)
def test_attach_during_a_slow_read_merges_exactly(ops: list[tuple[str, int]], turns: int, read_at_start: bool, max_events: int, end_at: int) -> None:
    """Whatever is emitted while an attach awaits its read, replay + live is every seq once, in order;
    a feed that ends meanwhile leaves the sink out (and the replay still ends at the last event)."""

    async def run() -> None:
        log = SlowLog(turns, read_at_start, max_events)
        feed = EventFeed(log)
        attaches: list[tuple[int, Recorder, asyncio.Task[list[bytes] | None]]] = []
        for step, (op, arg) in enumerate(ops):
            if step == end_at:
                feed.end()  # as a session's close does: nothing is emitted after it
            if op == "emit" and step < end_at:
                for _ in range(arg):
                    feed.emit(Stream(event={"type": "ping"}))
            elif op == "attach":
                sink = Recorder()
                attaches.append((arg, sink, asyncio.create_task(feed.attach(sink, arg))))
            else:
                for _ in range(arg):
                    await asyncio.sleep(0)
        for after, sink, task in attaches:
            replay = await task
            if replay is None:
                assert sink not in feed._sinks
                continue
            sink.frames[:0] = replay  # what the caller does on return (live frames came after it)
        for after, sink, task in attaches:
            if task.result() is not None:
                assert sink.seqs() == list(range(after + 1, log.last_seq + 1))
        assert not any(type(s).__name__ == "Pending" for s in feed._sinks)

    asyncio.run(run())
