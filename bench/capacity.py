"""Capacity benchmark: open latency with and without the warm pool, sessions per node with
hibernation, wake time, and memory per idle WebSocket next to a bare Starlette one. One run prints all.

Sessions go through the real gateway (`agent-gateway serve` in its own process), the real CLI and
the scripted model (in this process); sockets through `bench.serve` (the app with the synthetic
agent, and the bare Starlette baseline), since what they measure is per-connection state.

    python -m bench.capacity                          # small counts, a few minutes
    python -m bench.capacity --hibernated 1000 --live 150 --sockets 15000   # the node-scale targets
    python -m bench.capacity --only open|density|sockets
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench import load
from bench.serve import TOKEN as SOCKET_TOKEN
from gateway.scripted_model.server import ScriptedModelServer

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TOKEN = "capacity-bench-0123456789"
Frame = dict[str, Any]


# ---- processes and memory -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start")
        time.sleep(0.05)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def uss_kb(pid: int) -> int:
    """Memory only this process holds (private pages), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


@contextlib.contextmanager
def gateway(model_url: str, **settings: Any) -> Iterator[tuple[str, int]]:
    """`agent-gateway serve` with these settings; yields (ws url, pid)."""
    port = free_port()
    sessions_dir = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    flags = {
        "host": HOST, "port": port, "tokens": f"bench={TOKEN}", "demo": "off", "anthropic_base_url": model_url,
        "anthropic_api_key": "sk-bench", "sessions_dir": sessions_dir, "idle_timeout_s": 86400, "log_level": "warning",
        "max_sessions": 5000, "max_sessions_per_principal": 5000, **settings,
    }
    argv = [sys.executable, "-m", "gateway", "serve"] + [a for k, v in flags.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    proc = subprocess.Popen(argv, cwd=ROOT)
    try:
        wait_listening(proc, port, "gateway")
        yield f"ws://{HOST}:{port}/v1/ws", proc.pid
    finally:
        proc.terminate()
        proc.wait(120)
        shutil.rmtree(sessions_dir, True)


async def metric(ws_url: str, name: str) -> float:
    url = ws_url.replace("ws://", "http://").replace("/v1/ws", "/metrics")
    async with httpx.AsyncClient() as http:
        text = (await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and not line.startswith("#"))


# ---- a small client -----------------------------------------------------------------------------


class Socket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_seq = 0
        self._pending: list[Frame] = []  # frames of a message read but not yet looked at

    @classmethod
    async def connect(cls, url: str) -> "Socket":
        return cls(await connect(url, subprotocols=["agent-gateway.v1", f"bearer.{TOKEN}"], max_size=None))  # type: ignore[list-item]

    async def send(self, frame: Frame) -> str:
        frame.setdefault("id", secrets.token_hex(6))
        await self.ws.send(json.dumps(frame))
        return str(frame["id"])

    async def until(self, match: Callable[[Frame], bool], timeout: float = 120) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                if not self._pending:
                    self._pending = [json.loads(line) for line in str(await self.ws.recv()).split("\n")]
                frame = self._pending.pop(0)
                if frame["type"] == "event":
                    self.last_seq = frame["seq"]
                if match(frame):
                    return frame

    async def reply(self, frame: Frame) -> Frame:
        frame_id = await self.send(frame)
        return await self.until(lambda f: f["type"] != "event" and f.get("id") == frame_id)

    async def event(self, kind: str, match: Callable[[Frame], bool] = lambda e: True) -> Frame:
        return (await self.until(lambda f: f["type"] == "event" and f["event"]["kind"] == kind and match(f["event"])))["event"]

    async def close(self) -> None:
        await self.ws.close()


def is_state(state: str) -> Callable[[Frame], bool]:
    return lambda e: e["state"] == state


async def open_idle(url: str) -> tuple[Socket, str, float]:
    """A new session: its socket, id, and seconds from `open` to `idle`."""
    client = await Socket.connect(url)
    began = time.perf_counter()
    attached = await client.reply({"type": "open"})
    if attached["type"] != "attached":
        raise RuntimeError(attached)
    await client.event("state", is_state("idle"))
    return client, attached["session"]["session_id"], time.perf_counter() - began


async def first_turn(client: Socket) -> tuple[float, float]:
    """Seconds from a query to its first text delta and to its result."""
    began = time.perf_counter()
    query_id = await client.send({"type": "query", "prompt": "SCRIPT:hello"})
    await client.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    first = time.perf_counter() - began
    await client.event("result", lambda e: e["query_id"] == query_id)
    return first, time.perf_counter() - began


def ms(seconds: list[float], p: float = 50) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# ---- open latency: cold vs warm -----------------------------------------------------------------


async def wait_pool(url: str, size: int) -> None:
    async with asyncio.timeout(180):
        while await metric(url, "gateway_pool_ready") < size:
            await asyncio.sleep(0.1)


async def open_latency(url: str, samples: int, pool: int) -> dict[str, float]:
    opens, firsts = [], []
    for _ in range(samples):
        if pool:
            await wait_pool(url, pool)
        await asyncio.sleep(0.3)  # a quiet moment: nothing else starting
        client, _, opened = await open_idle(url)
        first, _ = await first_turn(client)
        opens.append(opened)
        firsts.append(first)
        await client.reply({"type": "close"})
        await client.close()
    if pool:
        await wait_pool(url, pool)
    await asyncio.sleep(0.3)
    began = time.perf_counter()
    clients = await asyncio.gather(*(open_idle(url) for _ in range(10)))
    together = time.perf_counter() - began
    for client, _, _ in clients:
        await client.reply({"type": "close"})
        await client.close()
    return {"open_ms": ms(opens), "first_token_ms": ms(firsts), "ten_at_once_ms": together * 1000}


# ---- density: hibernated and live sessions, wake time -------------------------------------------


async def density(url: str, pid: int, hibernated: int, live: int, wakes: int) -> dict[str, float]:
    """Open `hibernated + live` sessions with one turn each under `max_live_clis = live`: the
    longest-idle ones hibernate to make room. Then wake some and time it."""
    rss_before = rss_kb(pid)
    ids: list[str] = []
    gate = asyncio.Semaphore(4)  # as many starts at once as the gateway runs (max_starting_clis)

    async def one() -> None:
        async with gate:
            for attempt in range(20):
                try:
                    client, session_id, _ = await open_idle(url)
                    break
                except RuntimeError as refused:  # at_capacity while memory is short: wait as told
                    await asyncio.sleep(5 if attempt < 19 else 0)
                    if attempt == 19:
                        raise refused
            await first_turn(client)
            await client.close()
            ids.append(session_id)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(hibernated + live)))
    opening = time.perf_counter() - began
    await asyncio.sleep(2)
    clis = [p for p in descendants(pid) if "claude" in _cmdline(p)]
    out = {
        "sessions": len(ids), "opening_s": opening,
        "hibernated": await metric(url, 'gateway_sessions{state="hibernated"}'),
        "live_clis": await metric(url, "gateway_clis_live"), "cli_processes": len(clis),
        "gateway_rss_mb": rss_kb(pid) / 1024, "gateway_rss_per_session_kb": (rss_kb(pid) - rss_before) / max(1, len(ids)),
        "clis_uss_mb": sum(uss_kb(p) for p in descendants(pid)) / 1024,
    }
    times, turns = [], []
    for session_id in ids[:wakes]:  # the oldest: hibernated
        client = await Socket.connect(url)
        attached = await client.reply({"type": "attach", "session_id": session_id, "after": 0})
        replayed = attached["session"]["last_seq"]  # the replay's `running` is an old turn's
        began = time.perf_counter()
        query_id = await client.send({"type": "query", "prompt": "SCRIPT:hello"})
        await client.until(lambda f: f["type"] == "event" and f["seq"] > replayed and f["event"]["kind"] == "state" and f["event"]["state"] == "running")
        times.append(time.perf_counter() - began)
        await client.event("result", lambda e: e["query_id"] == query_id)
        turns.append(time.perf_counter() - began)
        await client.close()
    if times:
        out |= {"wake_p50_ms": ms(times), "wake_p99_ms": ms(times, 99), "wake_to_result_p50_ms": ms(turns)}
    return out


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")
    return ""


# ---- memory per idle socket ---------------------------------------------------------------------


@contextlib.contextmanager
def socket_server(kind: str, ws: str, python: str) -> Iterator[tuple[int, int]]:
    port = free_port()
    proc = subprocess.Popen([python, "-m", "bench.serve", kind, str(port), "auto", "--ws", ws], cwd=ROOT)
    try:
        wait_listening(proc, port, kind)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)


class Attacher(load.Client):
    """An idle socket: upgraded, attached to one session (or the baseline's bare `open`), then quiet."""

    def __init__(self, port: int, first: Frame) -> None:
        super().__init__(HOST, port, SOCKET_TOKEN)
        self._first = first

    def send(self, frame: Frame) -> None:
        super().send(self._first if frame["type"] == "open" else frame)


async def socket_memory(kind: str, ws: str, count: int, python: str) -> float:
    """KB of server RSS per idle attached socket (the server's RSS growth over `count` sockets)."""
    with socket_server(kind, ws, python) as (port, pid):
        loop = asyncio.get_running_loop()
        _, owner = await loop.create_connection(lambda: load.Client(HOST, port, SOCKET_TOKEN), HOST, port)
        await asyncio.wait_for(owner.attached, 30)
        first = {"type": "attach", "session_id": owner.session_id, "after": 0} if kind == "gateway" else {"type": "open"}
        await asyncio.sleep(1)
        before = rss_kb(pid)
        sockets = []
        for start in range(0, count, 500):  # in waves: the listen backlog is finite
            batch = [await loop.create_connection(lambda: Attacher(port, dict(first, id=secrets.token_hex(6))), HOST, port)
                     for _ in range(min(500, count - start))]
            await asyncio.wait_for(asyncio.gather(*(c.attached for _, c in batch)), 120)
            sockets += batch
        await asyncio.sleep(2)
        grown = rss_kb(pid) - before
        held = sum(1 for transport, c in sockets if not transport.is_closing() and (c.session_id or kind == "baseline"))
        if held < count:  # a refused or dropped socket would make the figure a lie
            raise RuntimeError(f"{kind} on {ws}: {held} of {count} sockets attached")
        for transport, _ in sockets:
            transport.close()
        owner.close()
        gc.collect()
        return grown / count


async def sockets_report(count: int, impls: list[str], python: str) -> dict[str, dict[str, float]]:
    """Per implementation: KB per socket for the gateway and the bare endpoint, their ratio, and the
    sockets one process held (every one attached, or the run fails)."""
    out = {}
    for ws in impls:
        gateway_kb = await socket_memory("gateway", ws, count, python)
        bare_kb = await socket_memory("baseline", ws, count, python)
        out[ws] = {"sockets": count, "gateway_kb": gateway_kb, "bare_kb": bare_kb, "ratio": gateway_kb / bare_kb}
    return out


# ---- main ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"load_before": load_average(), "cpus": os.cpu_count()}
    model = ScriptedModelServer()
    model.start_in_thread()
    try:
        if args.only in (None, "open"):
            with gateway(model.url, pool_size=0) as (url, _):
                report["cold"] = await open_latency(url, args.samples, 0)
            with gateway(model.url, pool_size=10) as (url, _):
                report["warm"] = await open_latency(url, args.samples, 10)
            report["warm_vs_cold_open"] = report["warm"]["open_ms"] / report["cold"]["open_ms"]
        if args.only in (None, "density"):
            with gateway(model.url, pool_size=0, max_live_clis=args.live, hibernate_after_s=3600, max_starting_clis=4) as (url, pid):
                report["density"] = await density(url, pid, args.hibernated, args.live, args.wakes)
    finally:
        model.stop()
    if args.only in (None, "sockets"):
        report["sockets"] = await sockets_report(args.sockets, args.ws.split(","), args.python)
    report["load_after"] = load_average()
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5, help="sequential opens timed, cold and warm")
    parser.add_argument("--hibernated", type=int, default=40, help="sessions hibernated in the density run")
    parser.add_argument("--live", type=int, default=10, help="live CLIs (max_live_clis) in the density run")
    parser.add_argument("--wakes", type=int, default=10, help="hibernated sessions woken and timed")
    parser.add_argument("--sockets", type=int, default=2000, help="idle sockets per server in the memory run")
    parser.add_argument("--ws", default="gateway,websockets", help="uvicorn WebSocket implementations to compare (bench.serve names)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the socket servers (e.g. a venv that adds wsproto)")
    parser.add_argument("--only", choices=("open", "density", "sockets"))
    report = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(_rounded(report), indent=2))
    return report


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
