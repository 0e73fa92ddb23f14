"""A session another replica runs, with the shape transports use (`SessionHandle`).

Every operation but attach is forwarded to the owner over RPC and answered with the owner's result;
attach follows the session's log in Redis on this replica. The description (`info()`) is the last
one this replica saw: the registry's at lookup, then each forwarded reply's.
"""

import msgspec

from gateway.cluster.node import ClusterNode
from gateway.cluster.registry import Entry
from gateway.wire import client as cf
from gateway.wire.codec import encode
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

    async def snapshot(self) -> Snapshot:
        snapshot = _snapshot(await self._node.rpc.call(self._owner, self.id, "snapshot"))
        self._info = snapshot.session
        return snapshot

    async def execute(self, frame: cf.ClientFrame, actor: Actor) -> Ack:
        return _ack(await self._node.rpc.call(self._owner, self.id, "execute", frame=encode(frame), actor=actor))

    async def cancel_query(self, query_id: str) -> bool:
        return _bool(await self._node.rpc.call(self._owner, self.id, "cancel_query", arg=query_id))

    async def close(self, reason: str) -> None:
        self._info = _info(await self._node.rpc.call(self._owner, self.id, "close", arg=reason))
