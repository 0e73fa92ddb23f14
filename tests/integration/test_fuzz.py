"""Fuzz: no input wedges a session (issue 12).

Thousands of client frames, drawn from protocol/schema.json and mutated (tests/support/frames.py),
go over several WebSockets and over HTTP to one live session of a `serve` process with a real CLI.
Every frame gets exactly one answer carrying its id (or, without a valid id, one id-less error),
every error code is a documented one and none is `internal`, no socket closes, every accepted query
gets exactly one `result`; afterwards the session answers a real query and a new one works, the log
holds no ERROR, and no CLI or child of one outlives its session or the process.

`FUZZ_FRAMES` sets how many frames (default 1,500, about a minute on 2 busy cores); with `CI` set,
the frames are the same on every run, else new ones each run.
"""

import asyncio
import collections
import contextlib
import itertools
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from websockets.exceptions import ConnectionClosed

from gateway.profiles import DEMO_PROFILE
from gateway.sessions import proctree
from gateway.transports.problems import STATUS
from gateway.wire.errors import ErrorCode
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.frames import FRESH, LIVE_REQUEST, Hints, client_frames, expected_id, messages
from tests.support.gateway import TOKENS
from tests.support.process_gateway import gateway_process
from tests.support.processes import alive, cmdline, descendants

FRAMES = int(os.environ.get("FUZZ_FRAMES", "1500"))
SOCKETS = 4
HTTP_EVERY = 8  # one message in eight goes over HTTP POST /v1/sessions/{id}/frames
# Each sender paces its frames, so the storm lasts long enough for the CLI to run turns, ask for
# approvals, be interrupted and reset while frames keep coming (unpaced, the frames are all
# answered within a turn or two).
PACE_S = 0.08
MAX_FRAME_BYTES = 1_048_576  # the default, which the gateway runs with here
# How often each frame type is drawn: queries and answers often; resets rarely (each may restart the CLI).
WEIGHTS = {
    "query": 8, "permission_response": 6, "question_response": 4, "interrupt": 4, "set_model": 3,
    "set_permission_mode": 3, "open": 2, "attach": 2, "ping": 2, "reset_conversation": 1,
}
HINTS = Hints(
    prompts=["SCRIPT:hello", "SCRIPT:bash", "SCRIPT:ask", "SCRIPT:long", "SCRIPT:write", "please run a command", "SCRIPT:nope"],
    models=list(DEMO_PROFILE.models or []),
    questions={"Which color?": ["Red", "Blue"]},
)
DOCUMENTED = {str(code) for code in ErrorCode} - {"internal"}


def corpus(count: int) -> list[bytes | str]:
    """`count` messages from Hypothesis: reproducible under CI, new ones locally."""
    drawn: list[bytes | str] = []

    @settings(
        max_examples=count, database=None, derandomize="CI" in os.environ, phases=[Phase.generate],
        deadline=None, suppress_health_check=list(HealthCheck),
    )
    @given(messages(client_frames(WEIGHTS), HINTS, MAX_FRAME_BYTES))
    def draw(message: bytes | str) -> None:
        drawn.append(message)

    draw()
    return drawn


@dataclass
class Tally:
    """What one socket (or the HTTP client) sent and got back."""

    sent: collections.Counter[str | None] = field(default_factory=collections.Counter)
    answered: collections.Counter[str | None] = field(default_factory=collections.Counter)
    answers: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str | None, list[bytes | str]] = field(default_factory=lambda: collections.defaultdict(list))

    def send(self, message: bytes | str) -> None:
        self.sent[expected_id(message)] += 1
        self.messages[expected_id(message)].append(message)

    def mismatches(self) -> dict[str | None, Any]:
        """For each id answered a different number of times than sent: (sent, answered, the messages)."""
        ids = set(self.sent) | set(self.answered)
        return {k: (self.sent[k], self.answered[k], [m[:500] for m in self.messages[k]]) for k in ids if self.sent[k] != self.answered[k]}


class Fuzzer:
    """The events every socket sees (all attach to one session), and each socket's tally."""

    def __init__(self) -> None:
        self.pending: dict[str, None] = {}  # open requests, in the order raised
        self.results: collections.Counter[str | None] = collections.Counter()
        self.accepted: set[str] = set()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.closes: list[int | None] = []
        self._fresh = itertools.count()

    def at_send(self, message: bytes | str, turn: int) -> bytes | str:
        """`message` with its placeholders filled: a request open now (if any), a fresh id."""
        live = list(self.pending) or ["req_none"]
        fills = {LIVE_REQUEST: live[turn % len(live)], FRESH: f"#{next(self._fresh)}"}
        for placeholder, value in fills.items():
            if isinstance(message, bytes):
                message = message.replace(placeholder.encode(), value.encode())
            else:
                message = message.replace(placeholder, value)
        return message

    def note_ack(self, answer: dict[str, Any]) -> None:
        result = answer.get("result")
        if answer["type"] == "ack" and isinstance(result, dict) and "query_id" in result:
            self.accepted.add(result["query_id"])

    async def read(self, client: WsClient, tally: Tally, watch_events: bool) -> None:
        """Everything the socket receives, until it closes."""
        try:
            while True:
                frame = await client.recv(timeout=300)
                if frame["type"] != "event":
                    tally.answered[frame.get("id")] += 1
                    tally.answers.append(frame)
                    self.note_ack(frame)
                elif watch_events:
                    self.on_event(frame["event"])
        except ConnectionClosed:
            self.closes.append(client.close_code)

    def on_event(self, event: dict[str, Any]) -> None:
        self.kinds[event["kind"]] += 1
        if event["kind"] in ("permission_request", "question"):
            self.pending[event["request_id"]] = None
        elif event["kind"] == "request_resolved":
            self.pending.pop(event["request_id"], None)
        elif event["kind"] == "result":
            self.results[event["query_id"]] += 1


async def send_ws(fuzzer: Fuzzer, client: WsClient, tally: Tally, share: list[bytes | str]) -> None:
    for turn, message in enumerate(share):
        message = fuzzer.at_send(message, turn)
        tally.send(message)
        await client.send(message)
        await asyncio.sleep(PACE_S)
    tally.sent["last"] += 1
    await client.send({"type": "ping", "id": "last"})  # answered after every frame before it


async def send_http(fuzzer: Fuzzer, http: httpx.AsyncClient, session_id: str, tally: Tally, share: list[bytes | str]) -> None:
    for turn, message in enumerate(share):
        message = fuzzer.at_send(message, turn)
        frame_id = expected_id(message)
        tally.send(message)
        response = await http.post(f"/v1/sessions/{session_id}/frames", content=message.encode() if isinstance(message, str) else message)
        body = response.json()
        if response.status_code == 200:
            answer = body
        else:  # a problem document: its status is its code's (502 for agent_error), never 500 (internal)
            answer = {**body, "type": "error"}
            assert body["code"] in DOCUMENTED and response.status_code == STATUS[body["code"]], (message[:300], response.status_code, body)
        assert answer.get("id") in (frame_id, None), (message[:300], body)  # a 413 is answered before the id is read
        tally.answered[frame_id] += 1
        tally.answers.append(answer)
        fuzzer.note_ack(answer)
        await asyncio.sleep(PACE_S)


PROCESS_WATCHDOG = proctree.__file__  # in the command line of the gateway's own process watchdog


async def watch_processes(root: int, seen: dict[int, str]) -> None:
    """Collect every process that runs below `root` while the test runs."""
    while True:
        for pid, command in descendants(root).items():
            if command:  # "" once it has exited: keep what it ran
                seen.setdefault(pid, command)
        await asyncio.sleep(0.2)


def still_running(seen: dict[int, str]) -> list[str]:
    """The processes of `seen` still alive (the same command line: not a re-used pid)."""
    return [f"{pid}: {command[:120]}" for pid, command in seen.items() if alive(pid) and cmdline(pid) == command]


@pytest.mark.timeout(180 + FRAMES // 10)
async def test_no_input_wedges_a_session(tmp_path: Path, model_url: str) -> None:
    frames = corpus(FRAMES)
    assert len(frames) > FRAMES // 2, len(frames)
    async with gateway_process(tmp_path, model_url) as (proc, port):
        seen: dict[int, str] = {}
        watcher = asyncio.create_task(watch_processes(proc.pid, seen))
        url = f"ws://127.0.0.1:{port}/v1/ws"
        clients = [await WsClient.connect(url, TOKENS["alice"]) for _ in range(SOCKETS)]
        session_id = (await open_session(clients[0]))["session"]["session_id"]
        for client in clients[1:]:
            client.resume_from(clients[0])
            assert (await attach(client, session_id, after=clients[0].last_seq))["type"] == "attached"
        fuzzer = Fuzzer()
        tallies = [Tally() for _ in range(SOCKETS + 1)]
        # The readers read until their socket closes (cancelling one mid-recv can lose the cancellation).
        readers = [asyncio.create_task(fuzzer.read(c, t, watch_events=i == 0)) for i, (c, t) in enumerate(zip(clients, tallies))]
        shares: list[list[bytes | str]] = [[] for _ in range(SOCKETS + 1)]
        for i, message in enumerate(frames):
            shares[SOCKETS if i % HTTP_EVERY == 0 else i % SOCKETS].append(message)
        headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            async with asyncio.timeout(240):
                await asyncio.gather(
                    *(send_ws(fuzzer, c, t, s) for c, t, s in zip(clients, tallies, shares)),
                    send_http(fuzzer, http, session_id, tallies[SOCKETS], shares[SOCKETS]),
                )
                for tally in tallies[:SOCKETS]:  # the last frame's answer comes after every other's
                    while tally.answered["last"] == 0:
                        for reader in readers:
                            if reader.done():
                                reader.result()  # a reader that failed (gap, duplicate event) fails the test
                        assert not fuzzer.closes, fuzzer.closes
                        await asyncio.sleep(0.1)
        assert fuzzer.closes == []  # no socket closed during the storm: no 1011, no 1009, no 4008

        # The storm is over: a reset ends what still runs or waits; the session then answers a real query.
        checker = await WsClient.connect(url, TOKENS["alice"])  # the readers own the storm's sockets
        checker.resume_from(clients[0])
        assert (await attach(checker, session_id, after=checker.last_seq))["type"] == "attached"
        reset = await checker.request({"type": "reset_conversation"}, timeout=60)
        assert reset["type"] == "ack", reset
        hello = await query(checker, "SCRIPT:hello")
        result = await checker.event("result", lambda e: e["query_id"] == hello["id"], timeout=60)
        assert result["is_error"] is False, result
        async with asyncio.timeout(30):
            while not fuzzer.results[hello["id"]]:  # the storm's sockets have seen every event up to it
                await asyncio.sleep(0.1)
        fuzzer.accepted.add(hello["id"])
        assert {q: fuzzer.results[q] for q in fuzzer.accepted if fuzzer.results[q] != 1} == {}  # one result per query
        assert set(fuzzer.results) - {None} <= fuzzer.accepted
        fresh = await WsClient.connect(url, TOKENS["alice"])
        await open_session(fresh)
        hello = await query(fresh, "SCRIPT:hello")
        assert (await fresh.event("result", lambda e: e["query_id"] == hello["id"], timeout=60))["is_error"] is False

        # Closing both sessions stops their CLIs and every process they started; the sockets get 4009.
        for client in (checker, fresh):
            assert (await client.request({"type": "close"}, timeout=60))["type"] == "ack"
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv(timeout=30)
            assert client.close_code == 4009
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert fuzzer.closes == [4009] * SOCKETS

        # Every frame was answered exactly once: by its id, or (no valid id) by one id-less error.
        for tally in tallies:
            assert tally.mismatches() == {}
            for answer in tally.answers:
                assert answer["type"] in ("ack", "error", "pong"), answer
                assert answer.get("id") is not None or answer["type"] == "error", answer
                if answer["type"] == "error":
                    assert answer["code"] in DOCUMENTED, answer
        codes = collections.Counter(a.get("code", a["type"]) for t in tallies for a in t.answers)
        print(f"{len(frames)} frames; answers {dict(codes)}; events {dict(fuzzer.kinds)}")

        async with asyncio.timeout(20):  # every session process is gone (the gateway's process watchdog stays with it)
            while any(PROCESS_WATCHDOG not in command for command in descendants(proc.pid).values()):
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) in (0, -signal.SIGTERM)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert any("claude" in command for command in seen.values()), seen  # the watcher did see the CLIs
        async with asyncio.timeout(10):  # the process watchdog leaves once it has found its gateway gone
            while still_running(seen):
                await asyncio.sleep(0.1)
    log = (tmp_path / "gateway.log").read_text()
    assert not re.search(r"\bERROR\b|\bCRITICAL\b|Traceback", log), log[-5000:]
