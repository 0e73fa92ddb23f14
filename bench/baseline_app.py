"""The baseline: a bare Starlette WebSocket sending the gateway's frames, one frame per WebSocket message.

It answers `open` with a bare `attached` and a `query` with the same synthetic agent's messages; the
text deltas (nearly every frame) go out through a pre-encoded frame with seq, ts and text spliced in,
the rest are encoded as the gateway encodes them. No session, log, queue or coalescing: what a plain
Starlette endpoint costs per frame, measured by the same client in the same run.
"""

import asyncio
import time

import msgspec
from claude_agent_sdk import StreamEvent
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.synthetic_agent import Burst, reply
from gateway.auth import SUBPROTOCOL
from gateway.sessions.translate import to_event
from gateway.wire.events import Stream
from gateway.wire.server import EventFrame

EPOCH = "00000000"
_encode = msgspec.json.Encoder().encode


def _delta_template() -> str:
    """The encoded frame of a text delta with `%d`/`%d`/`%s` slots for seq, ts and text."""
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "TEXT"}}
    frame = _encode(EventFrame(seq=0, epoch=EPOCH, ts=0, event=Stream(event=delta))).decode()
    return frame.replace('"seq":0', '"seq":%d').replace('"ts":0', '"ts":%d').replace('"TEXT"', '"%s"')


DELTA_FRAME = _delta_template()  # the phrases need no JSON escaping, so text is spliced in as is


async def endpoint(ws: WebSocket) -> None:
    await ws.accept(subprotocol=SUBPROTOCOL)
    seq = 0
    try:
        while True:
            frame = msgspec.json.decode(await ws.receive_text())
            if frame["type"] == "open":
                await ws.send_text(_encode({"type": "attached", "id": frame["id"]}).decode())
            elif frame["type"] == "query":
                for item in reply(msgspec.json.decode(frame["prompt"], type=Burst), "baseline-session-0000000000"):
                    if item.__class__ is float:
                        await asyncio.sleep(item)
                        continue
                    seq += 1
                    ts = int(time.time() * 1000)
                    if isinstance(item, StreamEvent) and item.event["type"] == "content_block_delta":
                        await ws.send_text(DELTA_FRAME % (seq, ts, item.event["delta"]["text"]))
                    else:
                        event = to_event(item, frame["id"])  # never None for the agent's messages
                        await ws.send_text(_encode(EventFrame(seq=seq, epoch=EPOCH, ts=ts, event=event)).decode())  # type: ignore[arg-type]
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/v1/ws", endpoint)])
