"""The load generator: raw WebSocket clients in one process (not the server's), one session each,
and optionally an SSE reader beside each (the gateway only).

A minimal RFC 6455 client and a minimal SSE reader on `asyncio.Protocol` (no task, queue or copy per
message), so a client costs a microsecond or two per event and the server under test stays the
bottleneck. Every frame is decoded and checked: event seqs must run 1, 2, 3... per connection, each
exactly once.
"""

import asyncio
import base64
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench import stages
from bench.synthetic_agent import Burst, stamp_of


class _Delta(msgspec.Struct):
    text: str = ""


class _Anthropic(msgspec.Struct):
    delta: _Delta | None = None


class _Event(msgspec.Struct):
    kind: str
    event: _Anthropic | None = None
    state: str | None = None


class _Session(msgspec.Struct):
    session_id: str


class _Frame(msgspec.Struct):
    type: str
    seq: int = 0
    event: _Event | None = None
    session: _Session | None = None


_decode = msgspec.json.Decoder(_Frame).decode


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    return sum(cpu_split(pid))


def wakeups(pid: int) -> int:
    """Times the process's main thread (its event loop) went to sleep and was woken: its voluntary
    context switches, from /proc/<pid>/status. Per event, a count that load on the host moves little."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


class Reader:
    """What a client checks and measures of the frames it gets, whatever transport carries them."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.attached: asyncio.Future[None] = loop.create_future()
        self.idle: asyncio.Future[None] = loop.create_future()  # the session's first `idle`: its agent is up
        self.done: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._request = b""  # the HTTP request, written once connected
        self._headed = False  # the response head is read
        self._buf = bytearray()
        self.session_id = ""
        self.next_seq = 1
        self.disorder = 0  # event frames out of sequence: a gap, a duplicate or a reordering
        self.events = 0
        self.messages = 0  # WebSocket messages, or SSE chunks
        self.deltas = 0
        self.latencies_ns: list[int] = []
        self.first_emit_ns = 0
        self.last_recv_ns = 0
        self.close_code: int | None = None

    def on_frame(self, line: bytes, now: int) -> None:
        frame = _decode(line)
        if frame.type == "attached" and not self.attached.done():
            self.session_id = frame.session.session_id if frame.session is not None else ""
            self.attached.set_result(None)
        event = frame.event
        if frame.type != "event" or event is None:
            return
        self.events += 1
        if frame.seq != self.next_seq:
            self.disorder += 1
        self.next_seq = frame.seq + 1
        if event.kind == "stream":
            delta = event.event.delta if event.event is not None else None
            if delta is not None and delta.text:
                stamp = stamp_of(delta.text)
                if not self.deltas:
                    self.first_emit_ns = stamp
                self.deltas += 1
                self.latencies_ns.append(now - stamp)
                self.last_recv_ns = now
        elif event.kind == "result":
            self._finish()
        elif event.kind == "state" and event.state == "idle" and not self.idle.done():
            self.idle.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def _read_head(self, status: bytes, accepted: bytes = b"") -> bool:
        """Take the response head off the buffer: True once it is read, with `status` (and
        `accepted` in it); a refused head finishes the client with its status line."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        if not buf.startswith(status) or accepted not in buf[:end].lower():
            self._finish(RuntimeError(buf[: buf.find(b"\r\n")].decode()))
            return False
        self._headed = True
        del buf[: end + 4]
        return True

    def _finish(self, exc: BaseException | None = None) -> None:
        for future in (self.attached, self.idle, self.done):
            if not future.done():
                if exc is None:
                    future.set_result(None)
                else:
                    future.set_exception(exc)
        if self._transport is not None and exc is not None:
            self._transport.close()


class Client(Reader, asyncio.Protocol):
    """One WebSocket connection: sends `open` once upgraded, then a `query`; checks what comes back."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__()
        self._request = (
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: agent-gateway.v1, bearer.{token}\r\n\r\n"
        ).encode()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self._buf
        buf += data
        if not self._headed:
            if not self._read_head(b"HTTP/1.1 101"):
                return
            self.send({"type": "open", "id": "o-" + secrets.token_hex(8)})  # a new id: a repeated one re-opens the same session
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 0x1:
                self.messages += 1
                for line in payload.split(b"\n"):
                    self.on_frame(line, now)
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                self._write(0x8, payload[:2])
                self._finish()
            elif opcode == 0x9:
                self._write(0xA, payload)
        del buf[:pos]

    def send(self, frame: dict[str, Any]) -> None:
        self._write(0x1, msgspec.json.encode(frame))

    def _write(self, opcode: int, payload: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        size = len(payload)
        mask = os.urandom(4)
        header = bytes([0x80 | opcode]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        self._transport.write(header + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big"))


class SseReader(Reader, asyncio.Protocol):
    """One SSE stream of a session (`GET /v1/sessions/{id}/events`): HTTP/1.1 chunked, one frame per `data:`."""

    def __init__(self, host: str, port: int, token: str, session_id: str) -> None:
        super().__init__()
        self._request = (
            f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self._text = bytearray()  # the event stream, de-chunked, up to its last complete message

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self._buf
        buf += data
        if not self._headed and not self._read_head(b"HTTP/1.1 200", b"chunked"):
            return
        while (line_end := buf.find(b"\r\n")) >= 0:
            size = int(buf[:line_end].split(b";")[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                break
            self._text += buf[line_end + 2 : line_end + 2 + size]
            del buf[: line_end + 2 + size + 2]
            self.messages += 1
            if size == 0:
                self._finish()
                return
        end = self._text.rfind(b"\n\n")
        if end >= 0:
            for line in bytes(self._text[:end]).split(b"\n"):
                if line.startswith(b"data: "):
                    self.on_frame(line[6:], now)
            del self._text[: end + 2]


@dataclass
class Result:
    sessions: int
    expected: int  # text deltas asked for, over all sessions
    delivered: int
    disorder: int
    seconds: float  # first delta emitted to last delta received
    server_cpu_s: float
    server_sys_s: float  # the kernel's share of server_cpu_s: socket and pipe syscalls, wake-ups
    client_cpu_s: float
    server_wakeups: int
    events: int
    messages: int
    latencies_us: list[float]
    close_codes: list[int]
    stages: dict[str, float] = field(default_factory=dict)  # server CPU s by stage (bench/stages.py), when sampled

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else float("nan")

    @property
    def per_core(self) -> float:
        return self.delivered / self.server_cpu_s if self.server_cpu_s > 0 else float("nan")

    def percentile(self, p: float) -> float:
        lat = self.latencies_us
        return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")


async def _run(
    host: str, port: int, token: str, server_pid: int, sessions: int, burst: Burst, timeout_s: float, wait_idle: bool,
    stages_file: str | None, sse: bool,
) -> Result:
    loop = asyncio.get_running_loop()
    sockets = [Client(host, port, token) for _ in range(sessions)]
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(loop.create_connection(lambda c=c: c, host, port) for c in sockets))  # type: ignore[misc]
        await asyncio.gather(*(c.idle if wait_idle else c.attached for c in sockets))
        streams = [SseReader(host, port, token, c.session_id) for c in sockets] if sse else []
        await asyncio.gather(*(loop.create_connection(lambda r=r: r, host, port) for r in streams))  # type: ignore[misc]
        await asyncio.gather(*(r.attached for r in streams))
    clients: list[Reader] = [*sockets, *streams]
    prompt = msgspec.json.encode(burst).decode()
    if stages_file:  # the sampler writes every WRITE_S: let it catch up with a quiet server
        await asyncio.sleep(2.5 * stages.WRITE_S)
    stages0 = stages.read(Path(stages_file)) if stages_file else {}
    (user0, sys0), own0, wake0 = cpu_split(server_pid), time.process_time(), wakeups(server_pid)
    events0, messages0 = sum(c.events for c in clients), sum(c.messages for c in clients)
    for c in sockets:
        c.send({"type": "query", "id": "q1", "prompt": prompt})
    await asyncio.wait([asyncio.ensure_future(c.done) for c in clients], timeout=timeout_s)
    if stages_file:
        await asyncio.sleep(2.5 * stages.WRITE_S)
    (user1, sys1), own1, wake1 = cpu_split(server_pid), time.process_time(), wakeups(server_pid)
    stages1 = stages.read(Path(stages_file)) if stages_file else {}
    latencies = sorted(ns / 1000 for c in clients for ns in c.latencies_ns)
    started = [c.first_emit_ns for c in clients if c.deltas]
    seconds = (max(c.last_recv_ns for c in clients) - min(started)) / 1e9 if started else 0.0
    result = Result(
        sessions=sessions,
        expected=len(clients) * burst.events,
        delivered=sum(c.deltas for c in clients),
        disorder=sum(c.disorder for c in clients),
        seconds=seconds,
        server_cpu_s=user1 + sys1 - user0 - sys0,
        server_sys_s=sys1 - sys0,
        client_cpu_s=own1 - own0,
        server_wakeups=wake1 - wake0,
        events=sum(c.events for c in clients) - events0,
        messages=sum(c.messages for c in clients) - messages0,
        latencies_us=latencies,
        close_codes=sorted({c.close_code for c in clients if c.close_code is not None}),
        stages=stages.difference(stages1, stages0),
    )
    for c in sockets:
        c.send({"type": "close", "id": "x1"})
    for r in streams:
        r.close()
    return result


def run(
    host: str, port: int, token: str, server_pid: int, sessions: int, burst: Burst, timeout_s: float = 60.0, wait_idle: bool = False,
    stages_file: str | None = None, sse: bool = False,
) -> Result:
    """Open `sessions` sessions, ask each for `burst`, wait for every answer (a process pool's job).

    `wait_idle`: measure from when every session is idle (its CLI started), not from its `attached`.
    `stages_file`: the server's stage sampler output (bench/stages.py), read at both ends of the measurement.
    `sse`: each session also has an SSE reader (the gateway only); figures count deltas delivered to both.
    """
    return asyncio.run(_run(host, port, token, server_pid, sessions, burst, timeout_s, wait_idle, stages_file, sse))
