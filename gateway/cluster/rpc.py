"""Forwarding between replicas: a request published to `P:replica:<owner>`, its reply published back
to `P:replica:<from>`, both on the one pub/sub connection of each replica.

Invariants: every call ends within `forward_timeout_s` with the owner's reply, the owner's error, or
`owner_unreachable` — never a hang; a reply that comes too late finds no caller and is dropped. A
request to this replica runs in a task the node owns (stopping the node cancels it), so a slow
frame never holds up the pub/sub reader. Nothing is retried here: the caller's client re-sends the
frame under the same id, and the owner's ack records make it run at most once.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cluster import keys
from gateway.config import Settings
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor

log = logging.getLogger("gateway.cluster.rpc")

NULL = msgspec.Raw(b"null")  # msgspec decodes `Raw | None` as null only: absent is a raw null
Op = Literal["execute", "snapshot", "cancel_query", "close"]


class Request(msgspec.Struct, tag="request", omit_defaults=True):
    id: str
    sender: str = msgspec.field(name="from")
    sid: str
    op: Op
    frame: msgspec.Raw = NULL  # an encoded client frame (execute)
    actor: Actor | None = None
    arg: str | None = None  # a query id (cancel_query), a reason (close)


class Reply(msgspec.Struct, tag="reply", omit_defaults=True):
    id: str
    body: msgspec.Raw = NULL
    code: str | None = None
    message: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Request | Reply).decode

Handler = Callable[[Request], Awaitable[bytes]]
"""Runs a request on this replica: the encoded reply body, or a GatewayError for the caller."""


class Hub(Protocol):
    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...


def unreachable(owner: str) -> GatewayError:
    return GatewayError(ErrorCode.OWNER_UNREACHABLE, f"the replica running this session ({owner}) did not answer; send the frame again")


class RpcNode:
    def __init__(self, redis: Redis, hub: Hub, settings: Settings, replica_id: str, handler: Handler) -> None:
        self.replica_id = replica_id
        self._redis = redis
        self._hub = hub
        self._prefix = settings.redis_key_prefix
        self._timeout_s = settings.forward_timeout_s
        self._handler = handler
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._hub.subscribe(keys.replica_channel(self._prefix, self.replica_id), self._on_message)

    async def stop(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._hub.unsubscribe(keys.replica_channel(self._prefix, self.replica_id))
        for task in self._serving:
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        for waiting in self._waiting.values():
            waiting.cancel()

    # ---- calling another replica -------------------------------------------------------------

    async def call(self, owner: str, sid: str, op: Op, *, frame: bytes | None = None, actor: Actor | None = None, arg: str | None = None) -> bytes:
        """Run `op` on session `sid` at its owner; its reply body, or its GatewayError."""
        request = Request(
            id=secrets.token_hex(8), sender=self.replica_id, sid=sid, op=op,
            frame=NULL if frame is None else msgspec.Raw(frame), actor=actor, arg=arg,
        )
        reply = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = reply
        try:
            async with asyncio.timeout(self._timeout_s):
                if not await self._redis.publish(keys.replica_channel(self._prefix, owner), _encode(request)):
                    raise unreachable(owner)  # nobody listens there: the replica is gone
                answer = await reply
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("%s of session %s at %s failed: %r", op, sid, owner, exc)
            raise unreachable(owner) from None
        finally:
            self._waiting.pop(request.id, None)
        if answer.code is not None:
            raise GatewayError(ErrorCode(answer.code), answer.message or answer.code)
        return bytes(answer.body)

    # ---- answering ---------------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message = _decode(data)
        except msgspec.DecodeError as exc:  # only replicas publish here: a bug, or another version
            log.error("unreadable message on %s: %r", self.replica_id, exc)
            return
        if isinstance(message, Reply):
            waiting = self._waiting.get(message.id)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            return
        task = asyncio.create_task(self._serve(message), name=f"rpc-{message.op}-{message.sid}")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, request: Request) -> None:
        try:
            reply = Reply(id=request.id, body=msgspec.Raw(await self._handler(request)))
        except GatewayError as exc:
            reply = Reply(id=request.id, code=str(exc.code), message=exc.message)
        except Exception:
            log.exception("forwarded %s of session %s failed", request.op, request.sid)
            reply = Reply(id=request.id, code=ErrorCode.INTERNAL, message="internal error; the session carries on")
        try:
            await self._redis.publish(keys.replica_channel(self._prefix, request.sender), _encode(reply))
        except (RedisError, OSError) as exc:  # the caller times out with owner_unreachable and re-sends
            log.warning("reply to %s lost: %r", request.sender, exc)
