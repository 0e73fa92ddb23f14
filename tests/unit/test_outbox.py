import asyncio

import pytest

from gateway.transports.outbox import Outbox, SlowConsumer


async def test_coalesces_everything_queued_into_one_batch() -> None:
    box = Outbox(max_bytes=1 << 20)
    for i in range(100):
        box.push(b"%d" % i)
    assert await box.take() == [b"%d" % i for i in range(100)]
    assert len(box) == 0


async def test_batches_are_bounded() -> None:
    box = Outbox(max_bytes=1 << 20, max_batch_frames=10)
    for i in range(25):
        box.push(b"x")
    sizes = [len(await box.take()) for _ in range(3)]
    assert sizes == [10, 10, 5]


async def test_take_waits_for_a_push() -> None:
    box = Outbox(max_bytes=100)
    waiter = asyncio.create_task(box.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.push(b"a")
    assert await waiter == [b"a"]


async def test_overflow_marks_slow_consumer_and_frees_nothing_more() -> None:
    box = Outbox(max_bytes=10)
    box.push(b"12345")
    box.push(b"123456")
    assert box.overflowed
    box.push(b"more")
    with pytest.raises(SlowConsumer):
        await box.take()


async def test_the_backlog_is_bounded_in_frames_too_and_the_replay_is_not_counted() -> None:
    box = Outbox(max_bytes=1 << 20, max_frames=10)
    box.push_many([b"r"] * 50)
    for _ in range(10):
        box.push(b"x")
    assert not box.overflowed
    box.push(b"x")
    assert box.overflowed


async def test_replay_is_not_held_to_the_bound_and_end_drains_first() -> None:
    box = Outbox(max_bytes=10)
    box.push_many([b"0123456789"] * 5)
    box.end()
    assert not box.overflowed
    assert len(await box.take()) == 5
    assert await box.take() == []


async def test_a_replay_still_queued_does_not_count_against_live_frames() -> None:
    """A large resume while the session streams: live frames are held to the bound, the replay isn't."""
    box = Outbox(max_bytes=100, max_batch_frames=2)
    box.push(b"attached")
    box.push_many([b"r" * 50] * 5)
    box.push(b"live-1")
    assert not box.overflowed
    assert await box.take() == [b"attached", b"r" * 50]
    assert await box.take() == [b"r" * 50] * 2
    box.push(b"L" * 60)  # the live backlog: 6 + 60 bytes
    assert not box.overflowed
    box.push(b"L" * 40)  # 106 > 100
    assert box.overflowed


async def test_a_single_frame_larger_than_the_bound_still_goes_out() -> None:
    box = Outbox(max_bytes=10)
    box.push(b"x" * 100)
    assert not box.overflowed
    assert await box.take() == [b"x" * 100]


async def test_a_burst_that_yields_between_frames_still_coalesces() -> None:
    box = Outbox(max_bytes=1 << 20, linger_frames=16)

    async def produce() -> None:
        for i in range(40):
            box.push(b"%d" % i)
            await asyncio.sleep(0)  # the SDK hands over one message per loop turn

    producer = asyncio.create_task(produce())
    sizes = []
    while sum(sizes) < 40:
        sizes.append(len(await box.take()))
    await producer
    assert sizes[0] >= 16 and len(sizes) <= 4


async def test_overflow_while_lingering_is_a_slow_consumer() -> None:
    box = Outbox(max_bytes=10)
    box.push(b"12345")
    asyncio.get_running_loop().call_soon(box.push, b"123456")  # lands during the sender's linger turn
    with pytest.raises(SlowConsumer):
        await box.take()


async def _timed_take(box: Outbox) -> tuple[list[bytes], float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await asyncio.wait_for(box.take(), 5)
    return batch, loop.time() - started


async def test_flush_window_an_idle_connections_frame_goes_at_once() -> None:
    box = Outbox(max_bytes=1 << 20, flush_window_s=10.0)
    box.push(b"first")
    batch, waited = await _timed_take(box)
    assert batch == [b"first"] and waited < 1.0


async def test_flush_window_packs_frames_that_follow_a_send() -> None:
    window = 0.2
    box = Outbox(max_bytes=1 << 20, flush_window_s=window)
    box.push(b"a")
    sent_at = asyncio.get_running_loop().time()
    assert await box.take() == [b"a"]

    async def paced() -> None:
        for frame in (b"b", b"c", b"d"):
            await asyncio.sleep(window / 10)
            box.push(frame)

    producer = asyncio.create_task(paced())
    batch = await asyncio.wait_for(box.take(), 5)
    await producer
    assert batch == [b"b", b"c", b"d"]  # one send for three paced frames
    assert asyncio.get_running_loop().time() - sent_at >= window * 0.9  # held to the window's end, no longer needed


async def test_flush_window_a_full_batch_does_not_wait_and_end_flushes() -> None:
    box = Outbox(max_bytes=1 << 20, linger_frames=16, flush_window_s=10.0)
    box.push(b"x")
    await box.take()
    for _ in range(16):
        box.push(b"y")
    batch, waited = await _timed_take(box)
    assert batch == [b"y"] * 16 and waited < 1.0
    box.push(b"z")  # within the window: waits for it, but the connection's end doesn't
    box.end()
    batch, waited = await _timed_take(box)
    assert batch == [b"z"] and waited < 1.0
    assert await box.take() == []


async def test_on_ready_comes_once_at_the_end_of_the_turn_and_take_ready_respects_the_window() -> None:
    """With no `take` waiting, a batch that may go is announced once per loop turn (what the turn
    produced shares it); one held by the flush window is announced at the window's end."""
    window = 0.2
    box = Outbox(max_bytes=1 << 20, flush_window_s=window)
    ready: list[list[bytes]] = []
    box.on_ready = lambda: ready.append(box.take_ready())
    box.push(b"a")
    box.push(b"b")
    assert ready == []  # not from inside the push
    await asyncio.sleep(0)
    assert ready == [[b"a", b"b"]]
    box.push(b"c")  # within the window of that send: held
    assert box.take_ready() == []
    await asyncio.sleep(window / 2)
    assert ready == [[b"a", b"b"]]
    await asyncio.sleep(window)
    assert ready == [[b"a", b"b"], [b"c"]]
    box.end()
    box.push(b"d")
    await asyncio.sleep(0)
    assert ready == [[b"a", b"b"], [b"c"]]  # an ended outbox is its sender's to drain
