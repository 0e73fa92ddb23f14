"""The resume benchmark's client: how long a reconnecting client waits for the events it missed.

One session on the owner replica answers a burst; then, again and again, a new WebSocket attaches
with a cursor `size` events back and reads until it holds the newest: on the owner (its in-memory
tail) and on another replica (the Stream in Redis, read by that replica's follower). The clock runs
from the `attach` frame sent to the last missed event received; connecting is not counted. Every
replayed frame is decoded and its seq checked (each once, in order).
"""

import asyncio
import time
from dataclasses import dataclass

import msgspec
from websockets.asyncio.client import connect

from bench.synthetic_agent import Burst


class _Frame(msgspec.Struct):
    type: str
    seq: int = 0
    id: str | None = None
    session: dict[str, object] | None = None


_decode = msgspec.json.Decoder(_Frame).decode


@dataclass
class Resume:
    where: str  # "owner" or "other replica"
    size: int  # events replayed per attach
    seconds: list[float]  # one per attach, sorted

    def percentile(self, p: float) -> float:
        return self.seconds[min(len(self.seconds) - 1, int(len(self.seconds) * p))]

    @property
    def rate(self) -> float:
        """Events per second at the median attach."""
        return self.size / self.percentile(0.5)


def _url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/v1/ws"


async def _session(port: int, token: str, burst: Burst) -> tuple[str, int]:
    """Open a session on `port`, have it answer `burst`; (its id, its last seq)."""
    async with connect(_url(port), subprotocols=["agent-gateway.v1", f"bearer.{token}"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(msgspec.json.encode({"type": "open", "id": "o1"}))
        session_id, last = "", 0
        await ws.send(msgspec.json.encode({"type": "query", "id": "q1", "prompt": msgspec.json.encode(burst).decode()}))
        while True:
            for line in (await ws.recv()).split("\n"):  # type: ignore[union-attr]
                frame = msgspec.json.decode(line)
                if frame["type"] == "attached":
                    session_id = frame["session"]["session_id"]
                elif frame["type"] == "event":
                    last = frame["seq"]
                    if frame["event"]["kind"] == "result":
                        return session_id, last


async def _attach(port: int, token: str, session_id: str, after: int, last: int) -> float:
    async with connect(_url(port), subprotocols=["agent-gateway.v1", f"bearer.{token}"], max_size=None) as ws:  # type: ignore[list-item]
        started = time.perf_counter()
        await ws.send(msgspec.json.encode({"type": "attach", "id": "a1", "session_id": session_id, "after": after}))
        expected = after + 1
        while expected <= last:
            for line in (await ws.recv()).split("\n"):  # type: ignore[union-attr]
                frame = _decode(line)
                if frame.type == "event":
                    if frame.seq != expected:
                        raise AssertionError(f"replay out of order: seq {frame.seq}, expected {expected}")
                    expected += 1
                elif frame.type not in ("attached", "ack"):
                    raise AssertionError(f"attach answered with {line[:200]}")
        return time.perf_counter() - started


async def _measure(owner: int, other: int, token: str, sizes: list[int], repeats: int) -> list[Resume]:
    session_id, last = await _session(owner, token, Burst(events=max(sizes)))
    results = []
    for size in sizes:
        for where, port in (("owner", owner), ("other replica", other)):
            await _attach(port, token, session_id, last - size, last)  # warm: the follower, connections, caches
            seconds = [await _attach(port, token, session_id, last - size, last) for _ in range(repeats)]
            results.append(Resume(where, size, sorted(seconds)))
    return results


def measure(owner: int, other: int, token: str, sizes: list[int], repeats: int) -> list[Resume]:
    """(A process pool's job.) One session on `owner`, then `repeats` attaches per size on each replica."""
    return asyncio.run(_measure(owner, other, token, sizes, repeats))


def table(rows: list[Resume]) -> str:
    head = f"{'resume':<28}{'p50 ms':>9}{'p99 ms':>9}{'events/s':>11}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{f'{row.size:,} events, {row.where}':<28}{row.percentile(0.5) * 1000:>9.2f}{row.percentile(0.99) * 1000:>9.2f}{row.rate:>11,.0f}"
        )
    return "\n".join(lines)
