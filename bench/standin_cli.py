#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI that speaks its stream-json protocol, for the real-path benchmark.

The gateway starts it as `cli_path`, so the real `ClaudeSDKClient`, its subprocess transport, its
control protocol and its message parser read it, then `SdkRunner` and the session. It answers the
SDK's control requests (`initialize`, `interrupt`, `set_model`, `set_permission_mode`, anything else
with an empty success), and answers each user message, whose text is a JSON `Burst` (see
`bench/synthetic_agent.py`: `events`, `rate`), with what the CLI writes for a long streamed answer:
a `system` init, then per assistant message of `MESSAGE_DELTAS` text deltas the `stream_event`
lines around them and the `assistant` message, then a `result`. One write per line, as the CLI does.

Each text delta ends with `@<CLOCK_MONOTONIC ns>` read just before its line is written, so the
client measures everything the gateway's side adds: the SDK's read and parse included.

Standard library only: it runs on any python3, and its CPU is not the gateway's.
"""

import json
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any

MODEL = "claude-sonnet-4-5"
VERSION = "2.1.330"  # reported in the init message, as the SDK checks
MESSAGE_DELTAS = 500
PHRASES = (
    " The gateway", " numbers each", " event once,", " encodes it", " a single time", " and hands", " the same bytes",
    " to every", " attached client;", " a client that", " falls behind", " gets several", " events per send.",
)
_out = sys.stdout.buffer


def write(message: dict[str, Any]) -> None:
    _out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    _out.flush()


def stream_event(session_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "stream_event", "uuid": str(uuid.uuid4()), "session_id": session_id, "event": event, "parent_tool_use_id": None}


class StandIn:
    def __init__(self) -> None:
        self.session_id = str(uuid.uuid4())
        self.inbox: "queue.Queue[dict[str, Any] | None]" = queue.Queue()
        self.interrupted = False

    def read_stdin(self) -> None:
        for line in sys.stdin.buffer:
            if line.strip():
                self.inbox.put(json.loads(line))
        self.inbox.put(None)

    def run(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while (message := self.inbox.get()) is not None:
            self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        if message.get("type") == "control_request":
            self.control(message)
        elif message.get("type") == "user":
            self.answer(message)

    def control(self, message: dict[str, Any]) -> None:
        request = message.get("request", {})
        response: dict[str, Any] = {}
        if request.get("subtype") == "initialize":
            response = {"commands": [], "models": [], "account": {}, "pid": os.getpid(), "output_style": "default"}
        elif request.get("subtype") == "interrupt":
            self.interrupted = True
        write({"type": "control_response", "response": {"subtype": "success", "request_id": message["request_id"], "response": response}})

    def poll(self) -> None:
        """Answer control requests that arrived while streaming (an interrupt stops the answer)."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if message is None:
                raise SystemExit(0)
            if message.get("type") == "control_request":
                self.control(message)
            else:
                self.inbox.queue.appendleft(message)  # a queued query: after this answer
                return

    def answer(self, message: dict[str, Any]) -> None:
        content = message["message"]["content"]
        burst = json.loads(content if isinstance(content, str) else content[0]["text"])
        events, rate = int(burst["events"]), float(burst.get("rate", 0.0))
        sid = self.session_id
        started = time.monotonic()
        self.interrupted = False
        write({
            "type": "system", "subtype": "init", "session_id": sid, "model": MODEL, "tools": [], "mcp_servers": [],
            "permissionMode": "default", "claude_code_version": VERSION, "uuid": str(uuid.uuid4()),
        })
        sent = 0
        for first in range(0, events, MESSAGE_DELTAS):
            count = min(MESSAGE_DELTAS, events - first)
            message_id = f"msg_{sid[:8]}{first:012d}"
            write(stream_event(sid, {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": MODEL, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1},
            }}))
            write(stream_event(sid, {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
            for i in range(first, first + count):
                if rate:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.poll()
                if self.interrupted:
                    break
                text = f"{PHRASES[i % len(PHRASES)]}@{time.monotonic_ns()}"
                write(stream_event(sid, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}))
                sent += 1
            write(stream_event(sid, {"type": "content_block_stop", "index": 0}))
            write(stream_event(sid, {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3 * count}}))
            write(stream_event(sid, {"type": "message_stop"}))
            write({
                "type": "assistant", "session_id": sid, "uuid": str(uuid.uuid4()), "parent_tool_use_id": None,
                "message": {
                    "id": message_id, "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": "".join(PHRASES[i % len(PHRASES)] for i in range(first, first + count))}],
                    "usage": {"input_tokens": 12, "output_tokens": 3 * count},
                },
            })
            if self.interrupted:
                break
        duration_ms = int((time.monotonic() - started) * 1000)
        write({
            "type": "result", "subtype": "error_during_execution" if self.interrupted else "success", "is_error": self.interrupted,
            "duration_ms": duration_ms, "duration_api_ms": duration_ms, "num_turns": 1, "session_id": sid, "stop_reason": "end_turn",
            "total_cost_usd": 0.0, "usage": {"input_tokens": 12, "output_tokens": 3 * sent}, "result": "done", "uuid": str(uuid.uuid4()),
        })


if __name__ == "__main__":
    StandIn().run()
