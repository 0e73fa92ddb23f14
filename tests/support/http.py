"""HTTP + SSE clients for tests: an SSE parser that checks event order, and an API client on httpx."""

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.support.client import WsClient
from tests.support.gateway import TOKENS

Frame = dict[str, Any]
_ids = itertools.count(1)


def next_id(prefix: str = "h") -> str:
    return f"{prefix}{next(_ids)}"


class SseParser:
    """Incremental `text/event-stream` parser (the WHATWG rules the gateway's output needs)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._id: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments: list[tuple[float, str]] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, Frame]]:
        """Messages completed by `chunk`, as (id, frame)."""
        self._buffer += chunk
        out = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if not line:
                if self._data:
                    if self._id is not None:
                        self.last_event_id = self._id
                    out.append((self._id, json.loads(b"\n".join(self._data))))
                self._data, self._id = [], None
                continue
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if not name:
                self.comments.append((time.monotonic(), value.decode()))
            elif name == b"data":
                self._data.append(value)
            elif name == b"id":
                self._id = value.decode()
            elif name == b"retry":
                self.retry = int(value)
        return out


class SseStream:
    """One open event stream; `events` stay contiguous across reconnects (checked on arrival)."""

    def __init__(self, response: httpx.Response, client: "ApiClient") -> None:
        self.response = response
        self.client = client
        self.parser = SseParser()
        self.frames: list[Frame] = []
        self.arrivals: list[float] = []
        self.chunks = 0
        self._pending: list[Frame] = []
        self._iter = response.aiter_raw()

    @property
    def connection(self) -> str:
        return self.response.headers["x-connection-id"]

    async def recv(self, timeout: float = 15.0) -> Frame:
        while not self._pending:
            chunk = await asyncio.wait_for(anext(self._iter), timeout)
            self.chunks += 1
            for event_id, frame in self.parser.feed(chunk):
                self.client.apply(frame, event_id)
                self.frames.append(frame)
                self.arrivals.append(time.monotonic())
                self._pending.append(frame)
        return self._pending.pop(0)

    # The WebSocket client's helpers need only `recv` and `events`: the same code serves both transports.
    until: Callable[..., Awaitable[Frame]] = WsClient.until
    event: Callable[..., Awaitable[Frame]] = WsClient.event
    state: Callable[..., Awaitable[None]] = WsClient.state

    @property
    def events(self) -> list[Frame]:
        return self.client.events

    async def drain(self, timeout: float = 15.0) -> None:
        """Read until the server ends the stream."""
        with contextlib.suppress(StopAsyncIteration):
            while True:
                await self.recv(timeout)


class ApiClient:
    """The HTTP API as one principal sees it; keeps the cursor (`last_event_id`) and every event applied."""

    def __init__(self, base_url: str, principal: str = "alice", token: str | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token or TOKENS[principal]}"}, timeout=60)
        self.events: list[Frame] = []
        self.epoch: str | None = None
        self.last_seq = 0
        self.session_id: str | None = None

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.last_seq}"

    def apply(self, frame: Frame, event_id: str | None) -> None:
        if frame["type"] == "event":
            if frame["epoch"] == self.epoch and frame["seq"] <= self.last_seq:
                raise AssertionError(f"duplicate event seq {frame['seq']} (last {self.last_seq})")
            if frame["seq"] != self.last_seq + 1:
                raise AssertionError(f"gap: got seq {frame['seq']} after {self.last_seq}")
            assert event_id == f"{frame['epoch']}:{frame['seq']}", (event_id, frame["seq"])
            self.epoch, self.last_seq = frame["epoch"], frame["seq"]
            self.events.append(frame)
        elif frame["type"] == "attached":
            self.epoch = frame["session"]["epoch"]
            assert event_id == f"{self.epoch}:{frame['after']}"
        elif frame["type"] == "reset":
            info = frame["snapshot"]["session"]
            self.epoch, self.last_seq = info["epoch"], info["last_seq"]
            assert event_id == self.cursor

    async def create(self, expect: int = 201, **body: Any) -> Frame:
        response = await self.http.post("/v1/sessions", json=body)
        assert response.status_code == expect, response.text
        created = response.json()
        self.session_id = created["session"]["session_id"]
        return created

    async def frame(self, frame: Frame, *, expect: int = 200, headers: dict[str, str] | None = None) -> Frame:
        frame.setdefault("id", next_id())
        response = await self.http.post(f"/v1/sessions/{self.session_id}/frames", json=frame, headers=headers)
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def stream(self, cursor: str | None = None, *, query: bool = False, **params: str) -> AsyncIterator[SseStream]:
        """Open the event stream from `cursor` (default: this client's), as `Last-Event-ID` or `?last_event_id=`."""
        cursor = self.cursor if cursor is None and self.epoch is not None else cursor
        headers = {"Last-Event-ID": cursor} if cursor and not query else {}
        if cursor and query:
            params["last_event_id"] = cursor
        request = self.http.build_request("GET", f"/v1/sessions/{self.session_id}/events", params=params, headers=headers)
        response = await self.http.send(request, stream=True)
        try:
            assert response.status_code == 200, (response.status_code, await response.aread())
            yield SseStream(response, self)
        finally:
            await response.aclose()

    kinds: Callable[..., list[str]] = WsClient.kinds
    text: Callable[..., str] = WsClient.text

    async def close(self) -> None:
        await self.http.aclose()
