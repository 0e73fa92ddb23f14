"""Encode a planned Reply the way the Anthropic Messages API does, streamed or whole.

The CLI parses these events with the official SDK, so event names, block shapes and
usage fields follow the real API closely.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from .script import Block, Reply, Text, Thinking, ToolUse

_json = msgspec.json.Encoder()


def estimate_tokens(size: int) -> int:
    """Roughly four characters per token, like English text through Claude's tokenizer."""
    return max(1, size // 4)


def output_tokens(reply: Reply) -> int:
    return estimate_tokens(sum(len(_payload(b)) for b in reply.content))


def _payload(block: Block) -> str:
    """The characters a block streams: its text, thinking, or tool input JSON."""
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Thinking):
        return block.thinking
    return _json.encode(block.input).decode()


def message(reply: Reply, model: str, input_tokens: int) -> dict[str, Any]:
    """The non-streaming response body (also the skeleton of `message_start`)."""
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens(reply),
        },
    }


def event(data: dict[str, Any]) -> bytes:
    """One SSE frame; the `event:` name always equals the payload's `type`."""
    name: str = data["type"]
    return b"event: " + name.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


def _pieces(s: str, size: int) -> list[str]:
    return [s[i : i + size] for i in range(0, len(s), size)]


def _start_and_deltas(block: Block, chunk: int) -> tuple[Block, list[dict[str, Any]]]:
    """The empty block announced by content_block_start, and the deltas that fill it."""
    pieces = _pieces(_payload(block), chunk)
    if isinstance(block, Text):
        return Text(""), [{"type": "text_delta", "text": p} for p in pieces]
    if isinstance(block, Thinking):
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        return Thinking("", ""), [*deltas, {"type": "signature_delta", "signature": block.signature}]
    return ToolUse(block.id, block.name, {}), [{"type": "input_json_delta", "partial_json": p} for p in pieces]


async def stream(reply: Reply, model: str, input_tokens: int) -> AsyncIterator[bytes]:
    """SSE frames for `reply`, pacing every delta by `reply.delay_ms`."""
    start = message(reply, model, input_tokens)
    start |= {"content": [], "stop_reason": None, "usage": start["usage"] | {"output_tokens": 1}}
    yield event({"type": "message_start", "message": start})
    yield event({"type": "ping"})
    for index, block in enumerate(reply.content):
        empty, deltas = _start_and_deltas(block, reply.chunk)
        yield event({"type": "content_block_start", "index": index, "content_block": empty})
        for delta in deltas:
            if reply.delay_ms:
                await asyncio.sleep(reply.delay_ms / 1000)
            yield event({"type": "content_block_delta", "index": index, "delta": delta})
        yield event({"type": "content_block_stop", "index": index})
    yield event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens(reply)},
        }
    )
    yield event({"type": "message_stop"})
