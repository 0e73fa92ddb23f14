"""A bare-socket WebSocket client that can stop reading for real (TCP backpressure), for slow-consumer tests."""

import base64
import json
import os
import socket
import struct
from typing import Any


class StalledSocket:
    """Handshakes, sends masked text frames, and reads nothing unless asked."""

    def __init__(self, port: int, token: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: agent-gateway.v1, bearer.{token}\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, frame: dict[str, Any]) -> None:
        self.send_text(json.dumps(frame).encode())

    def send_text(self, payload: bytes, timeout: float | None = None) -> bool:
        """Send one masked text message; False when the peer stopped taking it (within `timeout`) or reset the connection."""
        mask = os.urandom(4)
        if len(payload) < 126:
            header = bytes([0x81, 0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", len(payload))
        keystream = (mask * (len(payload) // 4 + 1))[: len(payload)]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(len(payload), "big")
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(header + mask + masked)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            return False
        finally:
            self.sock.settimeout(None)
        return True

    def read_until_close(self, timeout: float = 10.0) -> tuple[list[str], int | None]:
        """Read the server's messages up to its close frame: (text messages, close code or None if the
        connection ended without one). It reads with a larger buffer: a reader that woke up, not one
        that takes the backlog 4 KiB at a time."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(timeout)
        data, messages, offset = b"", [], 0
        try:
            while True:
                while (frame := _parse_frame(data, offset)) is not None:
                    opcode, payload, offset = frame
                    if opcode == 0x8:
                        return messages, int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None
                    if opcode == 0x1:
                        messages.append(payload.decode())
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return messages, None
                data += chunk
        except (TimeoutError, ConnectionResetError):
            return messages, None
        finally:
            self.sock.settimeout(None)

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read everything left and return the close code the server sent, if any."""
        self.sock.settimeout(timeout)
        data = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        index = data.rfind(b"\x88")
        while index >= 0:
            length = data[index + 1] & 0x7F
            if 2 <= length < 126 and index + 2 + length <= len(data):
                return int(struct.unpack("!H", data[index + 2 : index + 4])[0])
            index = data.rfind(b"\x88", 0, index)
        return None

    def close(self) -> None:
        self.sock.close()


def _parse_frame(data: bytes, offset: int) -> tuple[int, bytes, int] | None:
    """One unmasked, unfragmented server frame at `offset`: (opcode, payload, next offset), or None if incomplete."""
    if len(data) < offset + 2:
        return None
    opcode, length, start = data[offset] & 0x0F, data[offset + 1] & 0x7F, offset + 2
    if length == 126:
        if len(data) < start + 2:
            return None
        length, start = struct.unpack("!H", data[start : start + 2])[0], start + 2
    elif length == 127:
        if len(data) < start + 8:
            return None
        length, start = struct.unpack("!Q", data[start : start + 8])[0], start + 8
    if len(data) < start + length:
        return None
    return opcode, data[start : start + length], start + length
