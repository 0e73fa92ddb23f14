"""A session another replica runs, with the shape transports use (`SessionHandle`).

Every operation but attach is forwarded to the owner over RPC and answered with the owner's result;
attach follows the session's log in Redis through this replica's one `LogFollower` of the session,
by the rules `Session.attach` follows: the replay from the Stream, or a `reset` with the owner's
snapshot, then every later event exactly once. The description (`info()`) is the last one this
replica saw: the registry's at lookup, then each forwarded reply's; it is closed, too, once the log
this replica follows for it ended with the session. An owner that doesn't
answer may be gone: the operation then waits (bounded) for the replica that adopts the session and
goes there; the owner's ack records make a frame the lost owner did run count once.
"""

import msgspec

from gateway import PROTOCOL_VERSION
from gateway.cluster.node import ClusterNode
from gateway.cluster.registry import Entry
from gateway.cluster.rpc import Op
from gateway.events.feed import Pending, Sink
from gateway.events.follower import LogFollower
from gateway.sessions.session import reset_reason
from gateway.wire import client as cf
from gateway.wire.codec import encode
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor
from gateway.wire.server import Ack, Attached, Reset, SessionInfo, Snapshot

_ack = msgspec.json.Decoder(Ack).decode
_info = msgspec.json.Decoder(SessionInfo).decode
_snapshot = msgspec.json.Decoder(Snapshot).decode
_bool = msgspec.json.Decoder(bool).decode
FOLLOW_TRIES = 3  # followers started for one attach, should each end on a gap before it is subscribed


class _Seq(msgspec.Struct):
    seq: int


_seq = msgspec.json.Decoder(_Seq).decode


class _After:
    """A sink given a reset's snapshot: the follower may still deliver events the snapshot holds
    (it lags the owner by a flush); those are dropped, once past them frames go straight through."""

    def __init__(self, sink: Sink, position: int) -> None:
        self.sink = sink
        self.position = position
        self.passed = False

    def push(self, frame: bytes) -> None:
        if self.passed or _seq(frame).seq > self.position:
            self.passed = True
            self.sink.push(frame)

    def end(self) -> None:
        self.sink.end()


class RemoteSession:
    def __init__(self, entry: Entry, node: ClusterNode) -> None:
        self.id = entry.info.session_id
        self.principal = entry.principal
        self._owner = entry.owner
        self._info = entry.info
        self._node = node
        self._sinks: dict[Sink, Sink] = {}  # a client's sink -> what the follower delivers to
        self._follower: LogFollower | None = None

    @property
    def closed(self) -> bool:
        """Whether the session closed, as far as this replica knows: its transports tell a client
        whose events ended 4009 (closed) from 1012 (moved: resume) by it."""
        return self._info.state == "closed" or (self._follower is not None and self._follower.session_closed)

    @property
    def epoch(self) -> str:
        return self._info.epoch

    @property
    def last_seq(self) -> int:
        return self._info.last_seq

    def info(self) -> SessionInfo:
        return self._info

    async def _call(self, op: Op, *, frame: bytes | None = None, actor: Actor | None = None, arg: str | None = None) -> bytes:
        try:
            return await self._node.rpc.call(self._owner, self.id, op, frame=frame, actor=actor, arg=arg)
        except GatewayError as exc:  # the owner may be gone, or have handed the session over
            if exc.code not in (ErrorCode.OWNER_UNREACHABLE, ErrorCode.SESSION_NOT_FOUND):
                raise
            owner = await self._node.next_owner(self.id, self._owner, answered=exc.code == ErrorCode.SESSION_NOT_FOUND)
            if owner is None:
                raise
        self._owner = owner
        return await self._node.rpc.call(self._owner, self.id, op, frame=frame, actor=actor, arg=arg)

    async def snapshot(self) -> Snapshot:
        snapshot = _snapshot(await self._call("snapshot"))
        self._info = snapshot.session
        return snapshot

    async def attach(self, sink: Sink, reply_id: str, connection: str, after: int, epoch: str | None) -> tuple[Attached | Reset, list[bytes]]:
        """As `Session.attach`: the caller queues the first frame and the replay before it awaits.
        A follower that ended on a gap while the attach waited on it is replaced by a new one, which
        reads the log again (one that ended with the session leaves the sink unsubscribed: `closed`)."""
        for _ in range(FOLLOW_TRIES):
            follower = self._follower = await self._node.follow(self.id)
            first, frames = await self._attach(follower, sink, reply_id, connection, after, epoch)
            if not follower.ended or follower.session_closed:
                return first, frames
            self.detach(sink)
        raise GatewayError(ErrorCode.OWNER_UNREACHABLE, "the session's events can't be followed right now; attach again")

    async def _attach(
        self, follower: LogFollower, sink: Sink, reply_id: str, connection: str, after: int, epoch: str | None,
    ) -> tuple[Attached | Reset, list[bytes]]:
        try:
            if epoch is None or epoch == follower.epoch:
                frames = await follower.attach(sink, after)
                if frames is not None:
                    self._sinks[sink] = sink
                    attached = Attached(id=reply_id, connection=connection, after=after, session=self._info, protocol=PROTOCOL_VERSION)
                    return attached, frames
            pending = Pending(follower.last_seq + 1)  # what arrives while the owner takes the snapshot
            follower.subscribe(pending)
            try:
                snapshot = await self.snapshot()
            finally:
                follower.detach(pending)
            position = snapshot.session.last_seq
            tail = pending.merge([], position)
            delivered = _After(sink, position + len(tail))
            if not pending.ended:
                follower.subscribe(delivered)
            self._sinks[sink] = delivered
        except BaseException:
            self._node.unfollow(self.id)
            raise
        return Reset(id=reply_id, reason=reset_reason(epoch, after, snapshot.session), connection=connection, snapshot=snapshot), tail

    def detach(self, sink: Sink) -> None:
        delivered = self._sinks.pop(sink, None)
        if delivered is not None:
            self._node.detach(self.id, delivered)

    async def execute(self, frame: cf.ClientFrame, actor: Actor) -> Ack:
        return _ack(await self._call("execute", frame=encode(frame), actor=actor))

    async def cancel_query(self, query_id: str) -> bool:
        return _bool(await self._call("cancel_query", arg=query_id))

    async def close(self, reason: str) -> None:
        self._info = _info(await self._call("close", arg=reason))
