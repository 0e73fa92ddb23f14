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
"""

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.wire.errors import CloseCode

PING_TIMEOUT_REASON = "no answer to ping: resume from your last seq"


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

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    async def send(self, message: ASGISendEvent) -> None:
        if self.close_sent and self.handshake_complete and self.initial_response is None:
            raise ClientDisconnected  # Starlette raises WebSocketDisconnect for it
        await super().send(message)
