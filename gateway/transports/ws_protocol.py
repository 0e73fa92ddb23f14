"""uvicorn's WebSocket protocol (websockets-sansio) with the closes the wire contract promises.

Where uvicorn itself ends a connection, the peer gets a close code PROTOCOL.md defines and can act on:

- A peer that doesn't answer a ping within `ws_ping_timeout_s` is stalled or gone: close 4010
  (resume), not uvicorn's 1011 (our "internal error"). Its close frame waits behind whatever the
  peer hasn't read; a peer that reads none of it for `close_timeout` more is dropped.
- A message over `ws_max_size`: close 1009, and the close frame must reach the peer. The peer may
  still be sending the rest of that message; closing the socket with bytes unread makes the kernel
  answer with a reset, which can destroy the close frame before it is read (the peer sees 1006 and
  may resend). So the gateway half-closes and reads on, discarding, until the peer closes or
  `close_timeout` passes.

Once the protocol has closed on its own, the application's sends end as a disconnect (what they
are), not as uvicorn's "Unexpected ASGI message" error.

It also offers the application a write from its own turn: the ASGI extension `SEND_NOW` in the
scope is the protocol itself (`NowSender`). An ASGI send is a coroutine, so a connection that
sends from a callback needs a task for it, created and woken once per send; `send_now` writes a
text message at once when the socket takes it without waiting (open, no close sent, not paused
by flow control), through the same websockets connection, so frames, pings and the close keep one
order. Where it isn't ready the application uses the ASGI send, which waits.
"""

from typing import Protocol

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from gateway.wire.errors import CloseCode

PING_TIMEOUT_REASON = "no answer to ping: resume from your last seq"
SEND_NOW = "agent-gateway.send_now"


class NowSender(Protocol):
    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if hasattr(self, "scope"):  # accepted: made in `handle_connect`
            self.scope["extensions"].pop(SEND_NOW, None)  # the scope referred to its protocol: no cycle left for the GC

    def ready_to_send(self) -> bool: ...

    def send_now(self, text: bytes) -> bool: ...


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    _lingering = False  # closed after a refused message: incoming bytes are read and dropped

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": CloseCode.HEARTBEAT_TIMEOUT, "reason": PING_TIMEOUT_REASON})
        self.conn.fail(CloseCode.HEARTBEAT_TIMEOUT, PING_TIMEOUT_REASON)
        self._close_after(self.conn.data_to_send())
        self.transport.close()  # flushes what the peer hasn't read, close frame last

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        assert close is not None
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self._close_after(self.conn.data_to_send())
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # after the close frame; the peer reads it, then sees the end
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _close_after(self, output: list[bytes]) -> None:
        """Write the close frame and give the peer `close_timeout` to take it; then drop the connection."""
        self.stop_keepalive()
        self.transport.write(b"".join(output))
        self.close_sent = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:  # the scope exists and the application's task has not run yet
            self.scope["extensions"][SEND_NOW] = self

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if hasattr(self, "scope"):  # accepted: made in `handle_connect`
            self.scope["extensions"].pop(SEND_NOW, None)  # the scope referred to its protocol: no cycle left for the GC

    def ready_to_send(self) -> bool:
        """A text message sent now is written now: accepted, open, and the transport not paused."""
        return (
            self.handshake_complete and not self.close_sent and not self.disconnected and self.writable.is_set()
            and not self.transport.is_closing()
        )

    def send_now(self, text: bytes) -> bool:
        """Write one text message (UTF-8) now; False if the connection is closing (the peer's close
        arrived), as the ASGI send would raise a disconnect. Call only when `ready_to_send`."""
        try:
            self.conn.send_text(text)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    async def send(self, message: ASGISendEvent) -> None:
        if self.close_sent and self.handshake_complete and self.initial_response is None:
            raise ClientDisconnected  # Starlette raises WebSocketDisconnect for it
        await super().send(message)
