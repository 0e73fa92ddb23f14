"""The outbox's flush window through the whole stack: a paced stream's deltas share WebSocket messages."""

import json
from pathlib import Path
from typing import Any

from gateway.scripted_model.script import expected_texts
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, run_gateway
from tests.support.gateway import test_settings as make_settings


async def _turn_messages(client: WsClient) -> list[list[dict[str, Any]]]:
    """The frames of each WebSocket message until the turn's result, as they came."""
    messages = []
    while True:
        frames = [json.loads(line) for line in str(await client.ws.recv()).split("\n")]
        messages.append(frames)
        if any(f["type"] == "event" and f["event"]["kind"] == "result" for f in frames):
            return messages


async def _deltas_per_message(tmp_path: Path, model_url: str, window_ms: float) -> list[int]:
    """Stream counts of the messages carrying deltas of `SCRIPT:long` (a delta every 20 ms)."""
    settings = make_settings(tmp_path / str(window_ms), model_url, send_flush_window_ms=window_ms)
    async with run_gateway(settings) as gateway:
        client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        try:
            await open_session(client)
            await query(client, "SCRIPT:long")
            messages = await _turn_messages(client)
        finally:
            await client.close()
    def delta(frame: dict[str, Any]) -> str | None:
        event = frame["event"]["event"] if frame["type"] == "event" and frame["event"]["kind"] == "stream" else {}
        return event["delta"].get("text") if event.get("type") == "content_block_delta" else None

    events = [f for m in messages for f in m if f["type"] == "event"]
    assert [f["seq"] for f in events] == list(range(events[0]["seq"], events[0]["seq"] + len(events)))
    assert "".join(t for f in events if (t := delta(f))) == expected_texts("long")[0]  # every delta, in order
    return [n for m in messages if (n := sum(delta(f) is not None for f in m))]


async def test_paced_deltas_share_sends_within_the_window(tmp_path: Path, model_url: str) -> None:
    packed = await _deltas_per_message(tmp_path, model_url, window_ms=250)
    assert sum(packed) / len(packed) >= 3  # ~12 deltas land in each 250 ms window
    single = await _deltas_per_message(tmp_path, model_url, window_ms=0)
    assert sum(single) / len(single) < 2  # without a window the client keeps up: about one delta per message
