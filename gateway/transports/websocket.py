"""The WebSocket transport: `/v1/ws`. One socket attaches to one session; frames go both ways.

Every frame the gateway sends goes through the connection's Outbox, so replies and events keep one
order and a slow client costs a bounded amount of memory. The connection receives in the server's
own task for the socket. Under `agent-gateway serve` a batch the outbox lets go is written in the
turn that made it ready (`SEND_NOW`, ws_protocol.py), as long as the socket takes it without
waiting; only a socket that must wait, or a server without that write, gets a sender task, which
exists only while the outbox has something to deliver and ends once it is empty. So an idle
connection holds no task and no waiter of its own (memory per socket, bench/capacity.py), and a
paced stream's event costs no task or wake-up (bench/README.md). The sender ending the connection
(the session closed, a bug), the outbox overflowing (a sender stuck on a stalled peer can't notice),
or the receiver ending, each end the whole connection.
"""

import asyncio
import contextlib
import logging
import secrets

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway import logs
from gateway.auth import SUBPROTOCOL, Authenticator, offered_subprotocols
from gateway.config import Settings
from gateway.sessions.manager import SessionManager
from gateway.sessions.handle import SessionHandle
from gateway.sessions.session import now_ms
from gateway.transports.outbox import SlowConsumer, connection_outbox
from gateway.transports.quota import ConnectionQuota
from gateway.transports.ws_protocol import SEND_NOW, NowSender
from gateway.wire import client as cf
from gateway.wire.codec import FrameError, decode_client_frame, error_frame, frame_bytes, frame_id_of
from gateway.wire.errors import CloseCode, ErrorCode, GatewayError
from gateway.wire.events import Actor
from gateway.wire.server import Pong, Reset

log = logging.getLogger("gateway.ws")

CLOSE_TIMEOUT_S = 10.0  # a slow (not dead) client still gets its 4008 once it reads again


def new_connection_id() -> str:
    return "c_" + secrets.token_hex(4)


class WebSocketConnection:
    __slots__ = (  # one per socket
        "ws", "id", "actor", "principal", "manager", "settings", "quota", "outbox", "session", "_close_code", "_task", "_sender", "_ending",
        "_now",
    )

    def __init__(self, ws: WebSocket, principal: str, manager: SessionManager, settings: Settings, quota: ConnectionQuota) -> None:
        self.ws = ws
        self.id = new_connection_id()
        self.actor = Actor(principal=principal, connection=self.id)
        self.principal = principal
        self.manager = manager
        self.settings = settings
        self.quota = quota  # counts the socket while it is attached
        self.outbox = connection_outbox(settings)
        self.session: SessionHandle | None = None
        self._close_code: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None  # the one receiving: the server's task for this socket
        self._sender: asyncio.Task[None] | None = None  # only while the outbox has something to deliver
        self._ending = False  # the connection is ending: no sender starts, the receiver is stopped once
        self._now: NowSender | None = ws.scope.get("extensions", {}).get(SEND_NOW)  # the server's write from this turn

    async def run(self) -> None:
        logs.bind(self.principal, self.id)
        self.manager.metrics.ws.open += 1
        task = self._task = asyncio.current_task()
        assert task is not None
        self.outbox.on_wake = self._wake
        if self._now is not None:
            self.outbox.on_ready = self._send_ready
        self.outbox.on_overflow = self._end
        try:
            await self._receive_forever()
        except asyncio.CancelledError:
            if not self._ending or task.uncancel():  # not ours (the server is stopping): let it through
                raise
        except WebSocketDisconnect:
            pass
        except Exception:  # a bug, not the peer leaving: say so with 1011 (if the peer is still there)
            log.exception("connection %s failed", self.id)
            self._close_code = self._close_code or (CloseCode.INTERNAL_ERROR, "internal error: reconnect and resume")
        finally:
            self._ending = True
            sender = self._sender
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            self._detach()
            self.manager.metrics.ws.open -= 1
            if self.outbox.overflowed:
                self.manager.metrics.ws.slow_consumers += 1
                log.info("connection %s dropped: its send queue passed its bound", self.id)
                self._close_code = (CloseCode.SLOW_CONSUMER, "slow consumer: resume from your last seq")
            await self._close()

    def _end(self) -> None:
        """End the connection from outside the receiver: stop it where it waits (once)."""
        if not self._ending and self._task is not None:
            self._ending = True
            self._task.cancel()

    async def _close(self) -> None:
        """Send the close frame if the peer takes it soon; a stalled peer just loses the connection."""
        if self._close_code is None or self.ws.application_state != WebSocketState.CONNECTED:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(*self._close_code)

    def _detach(self) -> None:
        if self.session is not None:
            self.session.detach(self.outbox)
            self.session = None
            self.quota.give_back(self.principal)

    # ---- sending ---------------------------------------------------------------------------

    def _wake(self) -> None:
        """The outbox has something to deliver: a sender task, unless batches go out from `_send_ready`
        (the end of the session is the sender's to deliver: it closes the socket after)."""
        if self._now is None or self.outbox.ended:
            self._start_sender()

    def _send_ready(self) -> None:
        """Write the batches that may go now, in this turn, while the socket takes them without
        waiting; what it can't take yet is left to a sender task, which waits for the socket."""
        now = self._now
        assert now is not None  # `on_ready` is set only with it
        if self._sender is not None or self._ending:
            return
        outbox = self.outbox
        while now.ready_to_send():
            batch = outbox.take_ready()
            if not batch:
                return
            data = b"\n".join(batch)
            if not now.send_now(data):  # the peer is closing: the receiver hears of it
                self._end()
                return
            self.manager.metrics.ws.sent(len(batch), len(data))
        if len(outbox):
            self._start_sender()

    def _start_sender(self) -> None:
        if self._sender is None and not self._ending:
            self._sender = asyncio.create_task(self._send_queued())
            self._sender.add_done_callback(self._sender_done)

    async def _send_queued(self) -> None:
        """Send until the outbox is empty (then the task ends; the next frame starts another)."""
        while True:
            try:
                batch = await self.outbox.take()
            except SlowConsumer:
                return
            if not batch:  # the session closed: everything it said has been sent
                # Not closed for good (a restart, or the session moved to another replica): reconnect elsewhere.
                if self.manager.shutting_down or (self.session is not None and not self.session.closed):
                    self._close_code = (CloseCode.SERVICE_RESTART, "the gateway is restarting: reconnect")
                else:
                    self._close_code = (CloseCode.SESSION_CLOSED, "session closed")
                self._end()
                return
            data = b"\n".join(batch)
            await self.ws.send_text(data.decode())
            self.manager.metrics.ws.sent(len(batch), len(data))
            if not len(self.outbox) and not self.outbox.ended:
                self._sender = None  # no await between this test and the task's end: a push now starts a new sender
                return

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        """A sender that failed ends the connection: a peer gone (the receiver sees it too) or a bug (1011)."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if not isinstance(error, WebSocketDisconnect) and self._close_code is None:
            log.error("connection %s failed", self.id, exc_info=error)
            self._close_code = (CloseCode.INTERNAL_ERROR, "internal error: reconnect and resume")
        self._end()

    # ---- receiving -------------------------------------------------------------------------

    async def _receive_forever(self) -> None:
        if await self._handshake():
            while True:
                await self._receive_one()

    async def _handshake(self) -> bool:
        """Frames until one attaches the socket (True), or the handshake timeout (False: close 4002).
        A coroutine of its own, so its deadline isn't held for the socket's life."""
        try:
            async with asyncio.timeout(self.settings.handshake_timeout_s):
                while self.session is None:
                    await self._receive_one()
            return True
        except TimeoutError:
            self._close_code = (CloseCode.HANDSHAKE_TIMEOUT, "send open or attach first")
            return False

    async def _receive_one(self) -> None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if (len(raw) if isinstance(raw, bytes) else len(raw.encode())) > self.settings.max_frame_bytes:
            too_large = GatewayError(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {self.settings.max_frame_bytes} bytes")
            self._reply_error(too_large, frame_id_of(raw))
            return
        frame: cf.ClientFrame | None = None
        try:
            frame = decode_client_frame(raw)
            with logs.frame(frame.id):
                await self._handle(frame)
        except FrameError as exc:
            self._reply_error(exc)
        except GatewayError as exc:
            self._reply_error(exc, frame.id if frame else None)
        except Exception:
            frame_id = frame.id if frame else None
            log.exception("connection %s: frame %s failed", self.id, frame_id, extra={"frame_id": frame_id})
            self._reply_error(GatewayError(ErrorCode.INTERNAL, "internal error; the session carries on"), frame_id)

    def _reply_error(self, exc: GatewayError, frame_id: str | None = None) -> None:
        self.outbox.push(error_frame(exc, frame_id))

    async def _handle(self, frame: cf.ClientFrame) -> None:
        if isinstance(frame, cf.Ping):
            self.outbox.push(frame_bytes(Pong(id=frame.id, ts=now_ms())))
        elif isinstance(frame, (cf.Open, cf.Attach)):
            if self.session is not None:
                raise GatewayError(ErrorCode.ALREADY_ATTACHED, f"this socket is attached to {self.session.id}; open another socket")
            self.quota.take(self.principal)  # before `open` makes a session for a socket that can't have it
            try:
                if isinstance(frame, cf.Open):
                    session = await self.manager.open(self.principal, frame)
                    await self._attach(session, frame.id, 0, None)
                else:
                    await self._attach(await self.manager.get(self.principal, frame.session_id), frame.id, frame.after, frame.epoch)
            finally:
                if self.session is None:  # not attached after all
                    self.quota.give_back(self.principal)
        elif self.session is None:
            raise GatewayError(ErrorCode.NOT_ATTACHED, "send open or attach first")
        else:
            ack = await self.session.execute(frame, self.actor)
            self.outbox.push(frame_bytes(ack))

    async def _attach(self, session: SessionHandle, frame_id: str, after: int, epoch: str | None) -> None:
        """Subscribe, then queue the reply plus replay with no await in between (no live event can cut in)."""
        first, replay = await session.attach(self.outbox, frame_id, self.id, after, epoch)
        self.session = session
        logs.bind_session(session.id)
        self.manager.metrics.ws.attached(None if isinstance(first, Reset) else len(replay))
        log.info("connection %s attached to session %s after seq %d", self.id, session.id, after, extra={"seq": after})
        self.outbox.push(frame_bytes(first))
        self.outbox.push_many(replay)
        if session.closed:
            self.outbox.end()


async def websocket_endpoint(ws: WebSocket) -> None:
    state = ws.app.state
    auth: Authenticator = state.auth
    principal = auth.authenticate(ws)
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(ws) else None
    await ws.accept(subprotocol=subprotocol)
    if principal is None:
        await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
        return
    connection = WebSocketConnection(ws, principal, state.manager, state.settings, state.connections)
    await connection.run()
