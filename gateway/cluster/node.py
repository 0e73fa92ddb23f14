"""This replica as a member of the cluster: its Redis client, pub/sub hub, leases, registry, RPC and
log followers, started and stopped together, and the owner's side of every forwarded operation.

Invariants: a forwarded operation runs only on a session this replica holds the lease of (or one it
closed, still retained): anything else is answered `session_not_found`, so a replica that lost a
session never executes its frames. There is at most one `LogFollower` per session on this replica,
kept while some attach uses it (counted by `follow`/`detach`); starting and stopping one take turns
per session, so a follower being stopped never takes a new one's subscription with it.
"""

import asyncio
import logging
import secrets
from typing import Protocol

import msgspec

from gateway.cluster import keys
from gateway.cluster.acks import AckRecords
from gateway.cluster.ownership import Ownership
from gateway.cluster.registry import Registry
from gateway.cluster.rpc import Request, RpcNode
from gateway.cluster.writer import PipelineWriter
from gateway.config import Settings
from gateway.events.feed import Sink
from gateway.events.follower import LogFollower, LogGone
from gateway.sessions.session import Session
from gateway.store.pubsub import PubSubHub
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
        self._followers: dict[str, LogFollower] = {}
        self.hub = PubSubHub(self.redis, settings.redis_timeout_s)
        self.writer = PipelineWriter(self.redis)
        self.registry = Registry(self.redis, self.writer, settings)
        self.ownership = Ownership(self.redis, settings, self.replica_id, self._lost, self._followers.keys)
        self.rpc = RpcNode(self.redis, self.hub, settings, self.replica_id, self._serve)
        self._local = local
        self._users: dict[str, int] = {}  # attaches using each session's follower
        self._turns: dict[str, asyncio.Lock] = {}  # a follower's start and stop take turns
        self._dropping: set[asyncio.Task[None]] = set()

    def keys(self, session_id: str) -> keys.SessionKeys:
        return keys.SessionKeys.of(self.settings.redis_key_prefix, session_id)

    def acks(self, session_id: str) -> AckRecords:
        return AckRecords(self.redis, self.writer, self.keys(session_id).acks, self.settings.ack_ttl_s)

    async def start(self) -> None:
        self.hub.start()
        await self.rpc.start()
        await self.ownership.renew()  # listed as live before the first request can name us
        self.ownership.start()
        self.writer.start()
        log.info("replica %s joined the cluster", self.replica_id)

    async def stop(self) -> None:
        for task in self._dropping:
            task.cancel()
        await asyncio.gather(*self._dropping, return_exceptions=True)
        # Not ended: the session goes on elsewhere; the server closes these clients' connections (1012).
        await asyncio.gather(*(f.close() for f in self._followers.values()), return_exceptions=True)
        await self.writer.stop()
        await self.ownership.stop()
        await self.rpc.stop()
        await self.hub.stop()
        await self.redis.aclose()

    # ---- followers -----------------------------------------------------------------------------

    async def follow(self, session_id: str) -> LogFollower:
        """This replica's follower of the session's log, started on first use; `detach` returns it."""
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            async with self._turns.setdefault(session_id, asyncio.Lock()):
                follower = self._followers.get(session_id)
                if follower is None or follower.ended:
                    if follower is not None:
                        await follower.close()
                    try:
                        follower = await LogFollower.start(self.redis, self.hub, self.keys(session_id))
                    except LogGone:
                        raise GatewayError(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id}") from None
                    self._followers[session_id] = follower
                return follower
        except BaseException:
            self.unfollow(session_id)
            raise

    def detach(self, session_id: str, sink: Sink) -> None:
        follower = self._followers.get(session_id)
        if follower is not None:
            follower.detach(sink)
        self.unfollow(session_id)

    def unfollow(self, session_id: str) -> None:
        users = self._users.pop(session_id, 1) - 1
        if users:
            self._users[session_id] = users
            return
        task = asyncio.create_task(self._drop(session_id), name=f"unfollow-{session_id}")
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    async def _drop(self, session_id: str) -> None:
        """Stop following a session nobody here attaches to any more."""
        async with self._turns.setdefault(session_id, asyncio.Lock()):
            if session_id in self._users:  # attached again meanwhile
                return
            follower = self._followers.pop(session_id, None)
            if follower is not None:
                await follower.close()
            if session_id not in self._users:
                self._turns.pop(session_id, None)

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
