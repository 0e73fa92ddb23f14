"""How the WebSocket transport writes: in the turn a batch becomes ready, a sender task only while the
socket makes it wait (gateway/transports/websocket.py, `SEND_NOW` in ws_protocol.py)."""

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.transports.websocket import WebSocketConnection
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.raw_ws import StalledSocket, _parse_frame

BIG_TURN = "SCRIPT:" + json.dumps({"steps": [[{"text": "y", "repeat": 1_400_000}]], "chunk": 7000})  # 200 events of 7 KB


@pytest.fixture
def sender_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connection ids of every sender task started, in order."""
    started: list[str] = []
    original = WebSocketConnection._send_queued

    def counted(self: WebSocketConnection) -> Any:
        started.append(self.id)
        return original(self)

    monkeypatch.setattr(WebSocketConnection, "_send_queued", counted)
    return started


async def _result_of(client: WsClient, prompt: str) -> None:
    ack = await query(client, prompt)
    await client.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)


class CatchingUp:
    """A stalled socket's reader once it wakes up: every event frame, in the order they came."""

    def __init__(self, stalled: StalledSocket) -> None:
        self.sock = stalled.sock
        self.data, self.offset, self.seqs = b"", 0, []

    def until(self, seq: int) -> list[int]:
        """Read at least up to event `seq`; return the event seqs read in all (maybe a few past it)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(30)
        while not self.seqs or self.seqs[-1] < seq:
            while (frame := _parse_frame(self.data, self.offset)) is not None:
                _, payload, self.offset = frame
                self.seqs += [f["seq"] for f in map(json.loads, payload.decode().split("\n")) if f["type"] == "event"]
            if not self.seqs or self.seqs[-1] < seq:
                self.data += self.sock.recv(1 << 20)
        return self.seqs


async def test_a_paced_turn_needs_no_sender_task(tmp_path: Path, model_url: str, sender_tasks: list[str]) -> None:
    """A client that keeps up gets every frame written from the turn that made it ready."""
    async with run_gateway(make_settings(tmp_path, model_url)) as gateway:
        client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        await open_session(client)
        await _result_of(client, "SCRIPT:long")
        await _result_of(client, "SCRIPT:long")
        seqs = [f["seq"] for f in client.events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert sender_tasks == []
        await client.close()


async def test_a_reader_that_stalls_then_catches_up_gets_everything_in_order(tmp_path: Path, model_url: str, sender_tasks: list[str]) -> None:
    """While the socket makes the gateway wait, a sender task waits for it; once the reader has caught
    up, batches are written from their own turn again. Nothing is lost, reordered or sent twice."""
    async with run_gateway(make_settings(tmp_path, model_url)) as gateway:
        client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        session_id = (await open_session(client))["session"]["session_id"]
        start = client.last_seq
        stalled = await asyncio.to_thread(StalledSocket, gateway.port, TOKENS["alice"])
        await asyncio.to_thread(stalled.send, {"type": "attach", "id": "a1", "session_id": session_id, "after": start})
        await _result_of(client, BIG_TURN)
        assert sender_tasks, "the stalled socket never made the gateway wait: the test proves nothing"
        reader = CatchingUp(stalled)
        seqs = await asyncio.to_thread(reader.until, client.last_seq)
        assert seqs == list(range(start + 1, start + 1 + len(seqs)))
        # Caught up: the next turn goes out with no sender task for it.
        before = len(sender_tasks)
        await _result_of(client, "SCRIPT:long")
        seqs = await asyncio.to_thread(reader.until, client.last_seq)
        assert seqs == list(range(start + 1, start + 1 + len(seqs)))
        assert len(sender_tasks) == before
        stalled.close()
        await client.close()
