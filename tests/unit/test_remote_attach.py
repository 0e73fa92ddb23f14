"""A reset through another replica at exact timings (a fake follower and owner set them): the follower
lags the owner by a flush, so events the snapshot already holds may arrive after it; each reaches the
client once, in order, and none the snapshot holds."""

from typing import Any

import msgspec

from gateway.cluster.registry import Entry
from gateway.cluster.remote import RemoteSession
from gateway.config import Settings
from gateway.events.feed import Sink
from gateway.sessions.manager import session_limits
from gateway.wire.server import Reset, SessionInfo, Snapshot


def info(last_seq: int) -> SessionInfo:
    return SessionInfo(
        session_id="s1", profile="default", model="m", permission_mode="default", state="running", epoch="e1",
        last_seq=last_seq, created_at=0, last_activity=0, turns=0, total_cost_usd=0.0, queued=0, pending=[],
        allowed_models=["m"], allowed_modes=["default"], limits=session_limits(Settings()),
    )


def frame(seq: int) -> bytes:
    return b'{"type":"event","seq":%d,"epoch":"e1","ts":0,"event":{"kind":"state","state":"running"}}' % seq


class Follower:
    """Has delivered up to `last_seq`; `deliver` hands later frames to its sinks, as a live batch would."""

    def __init__(self, last_seq: int) -> None:
        self.epoch = "e1"
        self.last_seq = last_seq
        self.ended = False
        self.session_closed = False
        self.sinks: set[Sink] = set()

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        return None  # the cursor can't be served: a reset follows

    def subscribe(self, sink: Sink) -> None:
        self.sinks.add(sink)

    def detach(self, sink: Sink) -> None:
        self.sinks.discard(sink)

    def deliver(self, *seqs: int) -> None:
        for seq in seqs:
            for sink in list(self.sinks):
                sink.push(frame(seq))
            self.last_seq = seq


class Owner:
    """Answers a snapshot at `position`, delivering `during` through the follower while it is taken."""

    def __init__(self, follower: Follower, position: int, during: tuple[int, ...]) -> None:
        self.follower, self.position, self.during = follower, position, during
        self.rpc = self

    async def call(self, owner: str, sid: str, op: str, **_: Any) -> bytes:
        assert op == "snapshot"
        self.follower.deliver(*self.during)
        return msgspec.json.encode(Snapshot(session=info(self.position), transcript=[]))

    async def follow(self, session_id: str) -> Follower:
        return self.follower

    def detach(self, session_id: str, sink: Sink) -> None:
        self.follower.detach(sink)

    def unfollow(self, session_id: str) -> None: ...


class Client:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def push(self, data: bytes) -> None:
        self.seqs.append(msgspec.json.decode(data)["seq"])

    def end(self) -> None: ...


async def attach_at(follower_at: int, position: int, during: tuple[int, ...], after: tuple[int, ...]) -> list[int]:
    follower = Follower(follower_at)
    owner = Owner(follower, position, during)
    session = RemoteSession(Entry(principal="alice", owner="r1", info=info(follower_at)), owner)  # type: ignore[arg-type]
    client = Client()
    first, tail = await session.attach(client, "a1", "c1", 0, "another-epoch")
    assert first.reason == "epoch_mismatch" and first.snapshot.session.last_seq == position  # type: ignore[union-attr]
    for data in tail:
        client.push(data)
    follower.deliver(*after)
    return client.seqs


async def test_events_the_snapshot_holds_that_arrive_after_it_are_dropped() -> None:
    # The follower is at 5, the owner at 8 when it snapshots: 6-8 arrive only after the reply.
    assert await attach_at(5, 8, (), (6, 7, 8, 9, 10)) == [9, 10]


async def test_events_arriving_while_the_snapshot_is_taken_are_kept_past_its_position() -> None:
    # 6-9 arrive while the owner answers (its snapshot holds up to 7): 8 and 9 come with the reply.
    assert await attach_at(5, 7, (6, 7, 8, 9), (10,)) == [8, 9, 10]


async def test_a_follower_in_step_with_the_owner_passes_everything_after_the_snapshot() -> None:
    assert await attach_at(5, 5, (), (6, 7)) == [6, 7]


class Gapping(Follower):
    """Ends on a gap it can't fill while an attach waits on it."""

    async def attach(self, sink: Sink, after: int) -> list[bytes] | None:
        self.ended = True
        return []


async def test_an_attach_whose_follower_ends_on_a_gap_meanwhile_follows_again() -> None:
    followers = [Gapping(5), Follower(5)]
    owner = Owner(followers[1], 5, ())
    started: list[Follower] = []

    async def follow(session_id: str) -> Follower:
        started.append(followers[len(started)])
        return started[-1]

    owner.follow = follow  # type: ignore[method-assign]
    session = RemoteSession(Entry(principal="alice", owner="r1", info=info(5)), owner)  # type: ignore[arg-type]
    client = Client()
    first, _ = await session.attach(client, "a1", "c1", 5, "e1")
    assert started == followers and isinstance(first, Reset)
    followers[1].deliver(6, 7)
    assert client.seqs == [6, 7]
