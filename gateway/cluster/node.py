"""This replica as a member of the cluster: its Redis client, pub/sub hub, leases, registry and RPC,
started and stopped together, and the owner's side of every forwarded operation.

Invariant: a forwarded operation runs only on a session this replica holds the lease of (or one it
closed, still retained): anything else is answered `session_not_found`, so a replica that lost a
session never executes its frames.
"""

import logging
import secrets
from typing import Protocol

import msgspec

from gateway.cluster import keys
from gateway.cluster.acks import AckRecords
from gateway.cluster.ownership import Ownership
from gateway.cluster.pubsub_standin import PubSubHub
from gateway.cluster.registry import Registry
from gateway.cluster.rpc import Request, RpcNode
from gateway.cluster.writer import PipelineWriter
from gateway.config import Settings
from gateway.sessions.session import Session
from gateway.store.redis import connect
from gateway.wire.codec import decode_client_frame
from gateway.wire.errors import ErrorCode, GatewayError

log = logging.getLogger("gateway.cluster")

_encode = msgspec.json.Encoder().encode


class LocalSessions(Protocol):
    """The manager, as the owner's side of forwarding sees it."""

    def owned(self, session_id: str) -> Session | None: ...

    async def close(self, session: Session, reason: str) -> None: ...


class ClusterNode:
    def __init__(self, settings: Settings, local: LocalSessions) -> None:
        self.settings = settings
        self.replica_id = settings.replica_id or "r_" + secrets.token_hex(4)
        self.redis = connect(settings)
        self.hub = PubSubHub(self.redis)
        self.writer = PipelineWriter(self.redis)
        self.registry = Registry(self.redis, self.writer, settings)
        self.ownership = Ownership(self.redis, settings, self.replica_id, self._lost)
        self.rpc = RpcNode(self.redis, self.hub, settings, self.replica_id, self._serve)
        self._local = local

    def keys(self, session_id: str) -> keys.SessionKeys:
        return keys.SessionKeys.of(self.settings.redis_key_prefix, session_id)

    def acks(self, session_id: str) -> AckRecords:
        return AckRecords(self.redis, self.writer, self.keys(session_id).acks, self.settings.ack_ttl_s)

    async def start(self) -> None:
        await self.rpc.start()
        await self.ownership.renew()  # listed as live before the first request can name us
        self.ownership.start()
        self.writer.start()
        log.info("replica %s joined the cluster", self.replica_id)

    async def stop(self) -> None:
        await self.writer.stop()
        await self.ownership.stop()
        await self.rpc.stop()
        await self.hub.stop()
        await self.redis.aclose()

    async def watched(self, session_id: str) -> bool:
        """Whether another replica has clients attached to the session (the owner then doesn't reap it)."""
        return bool(await self.redis.exists(keys.watched(self.settings.redis_key_prefix, session_id)))

    def _lost(self, session_id: str) -> None:
        """Issue 9 decides what a replica does with a session it lost; the fence already stops its writes."""

    async def _serve(self, request: Request) -> bytes:
        session = self._local.owned(request.sid)
        if session is None:
            raise GatewayError(ErrorCode.SESSION_NOT_FOUND, f"no session {request.sid}")
        if request.op == "execute":
            assert request.actor is not None
            return _encode(await session.execute(decode_client_frame(bytes(request.frame)), request.actor))
        if request.op == "snapshot":
            return _encode(session.snapshot_now())
        if request.op == "cancel_query":
            return _encode(await session.cancel_query(request.arg or ""))
        await self._local.close(session, request.arg or "closed by client")
        return _encode(session.info())
