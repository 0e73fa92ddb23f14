"""The SSE transport: `GET /v1/sessions/{id}/events`, a session's frames as Server-Sent Events.

Each SSE message is one frame, exactly as the WebSocket sends it, in `data:`; there is no `event:`
field, so `EventSource.onmessage` sees every frame and one handler serves both transports. Event
frames carry `id: <epoch>:<seq>`, so the browser's automatic `Last-Event-ID` resumes exactly.

sse-starlette runs the response: keepalive comments, client disconnects, HEAD, stalled writes and
ending streams when uvicorn shuts down. The framing is ours: frames arrive encoded from the feed,
and a batch from the connection's Outbox becomes one write of consecutive messages.
"""

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import logs
from gateway.config import Settings
from gateway.metrics import TransportMetrics
from gateway.sessions.handle import SessionHandle
from gateway.transports import http_common
from gateway.transports.outbox import Outbox, SlowConsumer, connection_outbox
from gateway.transports.quota import ConnectionQuota
from gateway.wire.codec import frame_bytes
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.server import Reset

log = logging.getLogger("gateway.sse")

CURSOR_PARAM = "last_event_id"
SHUTDOWN_GRACE_S = 2.0  # on SIGTERM, time to flush and end streams cleanly (uvicorn waits 10 s in all)
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


class _Head(msgspec.Struct):
    """The part of an encoded event frame the SSE `id:` needs; the rest is skipped unparsed."""

    seq: int
    epoch: str


_head = msgspec.json.Decoder(_Head).decode


def event_id(epoch: str, seq: int) -> str:
    return f"{epoch}:{seq}"


def parse_cursor(text: str) -> tuple[str | None, int]:
    """`<epoch>:<seq>` (what the stream sends as `id:`) or a bare `<seq>` -> (epoch or None, seq)."""
    epoch, _, seq = text.rpartition(":")
    if len(text) > 200 or ":" in epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        raise GatewayError(ErrorCode.BAD_FRAME, f"a cursor is `<epoch>:<seq>` as sent in `id:`, not {text[:80]!r}")
    return epoch or None, int(seq)


def message(frame: bytes, epoch: str, seq: int) -> bytes:
    """One SSE message: a frame's JSON on one `data:` line (JSON has no raw newlines), its position as `id:`."""
    return b"id: %s:%d\ndata: %s\n\n" % (epoch.encode(), seq, frame)


def messages(frames: list[bytes]) -> bytes:
    """Consecutive SSE messages for a batch of event frames: one write however many there are."""
    heads = map(_head, frames)
    return b"".join([message(frame, head.epoch, head.seq) for frame, head in zip(frames, heads)])


class EventStream:
    """One SSE connection: attaches an Outbox to the session and turns its batches into writes."""

    def __init__(self, session: SessionHandle, settings: Settings, after: int, epoch: str | None, follow: bool, metrics: TransportMetrics) -> None:
        self.id = "c_" + secrets.token_hex(4)
        self.session = session
        self.settings = settings
        self.after = after
        self.epoch = epoch
        self.follow = follow
        self.metrics = metrics
        self.shutdown = anyio.Event()  # set by sse-starlette when the server shuts down

    async def body(self) -> AsyncIterator[bytes]:
        outbox = connection_outbox(self.settings)
        session = self.session
        first, replay = await session.attach(outbox, self.id, self.id, self.after, self.epoch)  # queued with no await between
        ender = asyncio.create_task(self._end_on_shutdown(outbox))
        self.metrics.open += 1
        self.metrics.attached(None if isinstance(first, Reset) else len(replay))
        try:
            position = first.snapshot.session.last_seq if isinstance(first, Reset) else self.after
            outbox.push_many(replay)
            if session.closed or not self.follow:
                outbox.end()
            yield b"retry: %d\n" % self.settings.sse_retry_ms + message(frame_bytes(first), session.epoch, position)
            while True:
                try:
                    batch = await outbox.take()
                except SlowConsumer:
                    self.metrics.slow_consumers += 1
                    log.info("SSE %s dropped: its send queue passed its bound", self.id)
                    return
                if not batch:  # the session closed (or follow=false): all it said has been sent
                    return
                data = messages(batch)
                yield data
                self.metrics.sent(len(batch), len(data))
        finally:
            self.metrics.open -= 1
            ender.cancel()
            session.detach(outbox)

    async def _end_on_shutdown(self, outbox: Outbox) -> None:
        """Server shutdown: send what is queued and end the stream, so it closes cleanly."""
        await self.shutdown.wait()
        outbox.end()


class _Response(EventSourceResponse):
    """The stream's response; `ended` runs once it is over, however it ends (the connection quota)."""

    def __init__(self, ended: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("SSE stream dropped: a write stalled (the client resumes with Last-Event-ID)")
        finally:
            self._ended()


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keepalive", sep="\n")


async def stream_events(request: Request) -> Response:
    caller, session = await http_common.session(request)
    # Both are checked when present (a malformed one is an error even if the other wins).
    header, param = (parse_cursor(c) if c else None for c in (request.headers.get("last-event-id"), request.query_params.get(CURSOR_PARAM)))
    epoch, after = header or param or (None, 0)
    follow = request.query_params.get("follow", "true")
    if follow not in ("true", "false"):
        raise GatewayError(ErrorCode.BAD_FRAME, "follow is true or false")
    if session.closed and epoch in (None, session.epoch) and after >= session.last_seq:
        raise GatewayError(ErrorCode.SESSION_CLOSED, "this session is closed and its last event was already delivered")
    settings: Settings = request.app.state.settings
    quota: ConnectionQuota = request.app.state.connections
    quota.take(caller)  # given back when the response ends, whether or not its body ever ran
    stream = EventStream(session, settings, after, epoch, follow == "true", http_common.manager(request).metrics.sse)
    logs.bind(caller, stream.id, session.id)
    return _Response(
        lambda: quota.give_back(caller),
        stream.body(),
        headers={**HEADERS, "X-Connection-Id": stream.id},
        ping=settings.sse_keepalive_s,
        ping_message_factory=_keepalive,
        sep="\n",
        send_timeout=settings.sse_send_timeout_s,
        shutdown_event=stream.shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )
