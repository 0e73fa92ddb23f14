"""A small WebSocket client for tests: frames by id, events by seq, strict ordering checks."""

import asyncio
import itertools
import json
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
_ids = itertools.count(1)


def next_id(prefix: str = "f") -> str:
    return f"{prefix}{next(_ids)}"


class WsClient:
    """Keeps every frame received; `events` must stay contiguous (checked on arrival)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.events: list[Frame] = []
        self.last_seq = 0
        self.epoch: str | None = None
        self._pending: list[Frame] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @classmethod
    async def connect(cls, url: str, token: str | None = None, *, subprotocols: list[str] | None = None, headers: dict[str, str] | None = None) -> "WsClient":
        protocols = subprotocols if subprotocols is not None else ["agent-gateway.v1"] + ([f"bearer.{token}"] if token else [])
        ws = await connect(url, subprotocols=protocols or None, additional_headers=headers, max_size=None, open_timeout=10)  # type: ignore[arg-type]
        return cls(ws)

    async def send(self, frame: Frame | str | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout: float = 10.0) -> Frame:
        while not self._pending:
            try:
                message = await asyncio.wait_for(self.ws.recv(), timeout)
            except ConnectionClosed as exc:
                self.close_code = exc.rcvd.code if exc.rcvd else None
                self.close_reason = exc.rcvd.reason if exc.rcvd else None
                raise
            for line in str(message).split("\n"):
                frame = json.loads(line)
                self._apply(frame)
                self._pending.append(frame)
        return self._pending.pop(0)

    def _apply(self, frame: Frame) -> None:
        self.frames.append(frame)
        if frame["type"] == "event":
            if frame["seq"] <= self.last_seq and frame["epoch"] == self.epoch:
                raise AssertionError(f"duplicate event seq {frame['seq']} (last {self.last_seq})")
            if frame["seq"] != self.last_seq + 1:
                raise AssertionError(f"gap: got seq {frame['seq']} after {self.last_seq}")
            self.epoch = frame["epoch"]
            self.last_seq = frame["seq"]
            self.events.append(frame)
        elif frame["type"] == "attached":
            self.epoch = frame["session"]["epoch"]
        elif frame["type"] == "reset":
            self.epoch = frame["snapshot"]["session"]["epoch"]
            self.last_seq = frame["snapshot"]["session"]["last_seq"]

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = 15.0) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if predicate(frame):
                    return frame

    async def request(self, frame: Frame, timeout: float = 15.0) -> Frame:
        """Send a frame and return the reply that carries its id (ack, error, attached or reset)."""
        frame.setdefault("id", next_id())
        await self.send(frame)
        return await self.until(lambda f: f["type"] != "event" and f.get("id") == frame["id"], timeout)

    async def event(self, kind: str, predicate: Callable[[Frame], bool] = lambda e: True, timeout: float = 15.0) -> Frame:
        """The next event of `kind` (already received ones included) that matches."""
        for frame in self.events:
            if frame["event"]["kind"] == kind and predicate(frame["event"]) and not frame.get("_seen"):
                frame["_seen"] = True
                return frame["event"]
        found = await self.until(lambda f: f["type"] == "event" and f["event"]["kind"] == kind and predicate(f["event"]), timeout)
        found["_seen"] = True
        return found["event"]

    async def state(self, state: str, timeout: float = 15.0) -> None:
        await self.event("state", lambda e: e["state"] == state, timeout)

    def kinds(self) -> list[str]:
        return [f["event"]["kind"] for f in self.events]

    def text(self) -> str:
        """Concatenated streamed text deltas (top-level only)."""
        out = []
        for f in self.events:
            e = f["event"]
            if e["kind"] == "stream" and e.get("parent_tool_use_id") is None:
                delta = e["event"].get("delta") or {}
                if delta.get("type") == "text_delta":
                    out.append(delta["text"])
        return "".join(out)

    async def close(self) -> None:
        await self.ws.close()

    def abort(self) -> None:
        """Drop the TCP connection with no close frame, like a network cut."""
        self.ws.transport.abort()

    def resume_from(self, other: "WsClient") -> None:
        """Continue another client's cursor (a reconnect of the same tab)."""
        self.last_seq, self.epoch = other.last_seq, other.epoch
