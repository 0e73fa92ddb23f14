"""This replica as a member of the cluster: its Redis client, pub/sub hub, leases, registry, RPC and
log followers, started and stopped together, and the owner's side of every forwarded operation.

Invariants: a forwarded operation runs only on a session this replica holds the lease of (or one it
closed, still retained): anything else is answered `session_not_found`, so a replica that lost a
session never executes its frames. There is at most one `LogFollower` per session on this replica,
kept while some attach uses it (counted by `follow`/`detach`); starting and stopping one take turns
per session, so a follower being stopped never takes a new one's subscription with it.
"""

import asyncio
import contextlib
import logging
import random
import secrets
from typing import Protocol

import msgspec

from gateway.cluster import keys
from gateway.cluster.acks import AckRecords
from gateway.cluster.adoption import Adopter
from gateway.cluster.ownership import Orphan, Ownership
from gateway.cluster.registry import Registry
from gateway.cluster.rpc import Request, RpcNode, unreachable
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
_bool = msgspec.json.Decoder(bool).decode
OWNER_POLL_S = 0.1  # how often a frame for a session whose owner is gone looks for the next one


class LocalSessions(Protocol):
    """The manager, as the owner's side of forwarding sees it."""

    def owned(self, session_id: str) -> Session | None: ...

    async def close(self, session: Session, reason: str) -> None: ...

    async def adopt(self, orphan: Orphan, fence: int) -> None:
        """Run a session whose owner is gone, this replica holding its lease under token `fence`."""
        ...

    def abandon(self, session_id: str) -> None:
        """Another replica owns the session now: stop running it here, writing nothing more."""
        ...

    async def restore(self, session_id: str, log_lost: bool) -> None:
        """Redis lost the session's registry entry (and, `log_lost`, its log) while this replica runs it."""
        ...


class ClusterNode:
    def __init__(self, settings: Settings, local: LocalSessions) -> None:
        self.settings = settings
        self.replica_id = settings.replica_id or "r_" + secrets.token_hex(4)
        self.redis = connect(settings)
        self._followers: dict[str, LogFollower] = {}
        self.hub = PubSubHub(self.redis, settings.redis_timeout_s, on_reconnect=lambda: self.ownership.renew_soon())
        self.writer = PipelineWriter(self.redis)
        self.registry = Registry(self.redis, self.writer, settings, self.replica_id)
        self.ownership = Ownership(self.redis, settings, self.replica_id, self._lost, self._followers.keys, local.restore)
        self.rpc = RpcNode(self.redis, self.hub, settings, self.replica_id, self._serve)
        self.adopter = Adopter(self.ownership, settings.lease_ttl_s / 3, local.adopt, settings.lease_ttl_s)
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
        self.adopter.start()
        log.info("replica %s joined the cluster", self.replica_id)

    async def stop(self) -> None:
        await self.adopter.stop()
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

    async def next_owner(self, session_id: str, gone: str, answered: bool) -> str | None:
        """The replica that runs the session now that `gone` didn't answer for it (`answered` False) or
        answered it doesn't run it: when `gone` handed it over, or is gone itself (nothing listens on
        its channel), or answered, waits up to `ownerless_wait_s` for the adoption. A replica restarted
        under `gone`'s id answers until it adopts the session itself: the fence, raised by every
        adoption, tells that apart from the dead process's lease. None when `gone` still has it (slow,
        or paused: it loses the session once its lease runs out), when no adoption came, or when the
        session is over."""
        meta = self.keys(session_id).meta
        channel = keys.replica_channel(self.settings.redis_key_prefix, gone)
        before: bytes | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.ownerless_wait_s):
                while True:
                    owner, state, handed_over, fence = await self.redis.hmget(meta, ("owner", "state", "handed_over", "fence"))
                    if state in (None, b"closed"):
                        return None
                    before = fence if before is None else before
                    if owner is not None and (owner.decode() != gone or fence != before):
                        return owner.decode()
                    if not answered and handed_over is None and (await self.redis.pubsub_numsub(channel))[0][1]:
                        return None
                    await asyncio.sleep(OWNER_POLL_S)
        return None

    async def hand_over(self, session_id: str) -> None:
        """Give a session this replica stopped running (it drains) to another one now: the lease goes
        and a live replica is asked to adopt it at once; should none take it, the first replica to
        look for sessions without an owner adopts it."""
        if not await self.ownership.hand_over(session_id):
            return
        targets = await self.ownership.live_replicas()
        random.shuffle(targets)
        for target in targets:
            try:
                if _bool(await self.rpc.call(target, session_id, "adopt")):
                    return
            except GatewayError as exc:
                log.warning("replica %s did not adopt session %s: %s", target, session_id, exc.message)

    def _lost(self, session_id: str) -> None:
        """A renewal found the session's lease taken: another replica adopted it."""
        self._local.abandon(session_id)

    async def _serve(self, request: Request) -> bytes:
        if request.op == "adopt":
            return _encode(await self.adopter.adopt(Orphan(request.sid, 0)))
        session = self._local.owned(request.sid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.lease_ttl_s):  # an adoption takes moments, never a lease
                while session is None and self.ownership.holds(request.sid):  # this replica is adopting it right now
                    await asyncio.sleep(OWNER_POLL_S)
                    session = self._local.owned(request.sid)
        if session is None:
            raise GatewayError(ErrorCode.SESSION_NOT_FOUND, f"no session {request.sid}")
        if request.op == "execute":
            assert request.actor is not None
            return _encode(await session.execute(decode_client_frame(bytes(request.frame)), request.actor))
        if request.op == "snapshot":
            return _encode(await session.committed_snapshot())
        if request.op == "cancel_query":
            return _encode(await session.cancel_query(request.arg or ""))
        await self._local.close(session, request.arg or "closed by client")
        return _encode(session.info())
