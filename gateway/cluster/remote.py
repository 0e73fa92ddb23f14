"""A session another replica runs, with the shape transports use (`SessionHandle`).

Every operation but attach is forwarded to the owner over RPC and answered with the owner's result;
attach follows the session's log in Redis on this replica. The description (`info()`) is the last
one this replica saw: the registry's at lookup, then each forwarded reply's. An owner that doesn't
answer may be gone: the operation then waits (bounded) for the replica that adopts the session and
goes there; the owner's ack records make a frame the lost owner did run count once.
"""

import msgspec

from gateway.cluster.node import ClusterNode
from gateway.cluster.registry import Entry
from gateway.cluster.rpc import Op
from gateway.wire import client as cf
from gateway.wire.codec import encode
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor
from gateway.wire.server import Ack, SessionInfo, Snapshot

_ack = msgspec.json.Decoder(Ack).decode
_info = msgspec.json.Decoder(SessionInfo).decode
_snapshot = msgspec.json.Decoder(Snapshot).decode
_bool = msgspec.json.Decoder(bool).decode


class RemoteSession:
    def __init__(self, entry: Entry, node: ClusterNode) -> None:
        self.id = entry.info.session_id
        self.principal = entry.principal
        self._owner = entry.owner
        self._info = entry.info
        self._node = node

    @property
    def closed(self) -> bool:
        return self._info.state == "closed"

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
        except GatewayError as exc:
            if exc.code != ErrorCode.OWNER_UNREACHABLE:
                raise
        self._owner = await self._node.next_owner(self.id, self._owner)
        return await self._node.rpc.call(self._owner, self.id, op, frame=frame, actor=actor, arg=arg)

    async def snapshot(self) -> Snapshot:
        snapshot = _snapshot(await self._call("snapshot"))
        self._info = snapshot.session
        return snapshot

    async def execute(self, frame: cf.ClientFrame, actor: Actor) -> Ack:
        return _ack(await self._call("execute", frame=encode(frame), actor=actor))

    async def cancel_query(self, query_id: str) -> bool:
        return _bool(await self._call("cancel_query", arg=query_id))

    async def close(self, reason: str) -> None:
        self._info = _info(await self._call("close", arg=reason))
