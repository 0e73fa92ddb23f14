"""A synthetic agent: an `AgentRunner` that answers a query with a stream of the SDK's own messages.

No CLI and no model. One producer task per runner builds what `ClaudeSDKClient.receive_messages()`
would yield for a long answer (a `SystemMessage` init, then per assistant message the Anthropic
streaming events around `MESSAGE_DELTAS` text deltas of a few words each and the `AssistantMessage`,
then a `ResultMessage`) and hands each to `session.on_message`, as `SdkRunner`'s reader task does.

The query's prompt is a JSON `Burst`. Every text delta ends with `@<CLOCK_MONOTONIC ns>` read just
before it is emitted, so a client on the same machine measures the latency the gateway adds.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
from claude_agent_sdk import AssistantMessage, ResultMessage, StreamEvent, SystemMessage, TextBlock

from gateway.sessions.runner import RunnerHooks

MODEL = "claude-sonnet-4-5"
MESSAGE_DELTAS = 500  # text deltas per assistant message: an answer of ~1,500 tokens
STAMP = "@"
PHRASES = (
    " The gateway", " numbers each", " event once,", " encodes it", " a single time", " and hands", " the same bytes",
    " to every", " attached client;", " a client that", " falls behind", " gets several", " events per send.",
)


class Burst(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the synthetic agent is asked to do: the prompt of a query, as JSON."""

    events: Annotated[int, msgspec.Meta(ge=0)]  # text deltas in the answer
    rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # text deltas per second; 0: as fast as the producer goes
    chunk: Annotated[int, msgspec.Meta(ge=1)] = 1  # text deltas per event-loop turn; the SDK hands over one message per turn


def stamp_of(text: str) -> int:
    """The emission time (monotonic ns) carried by a text delta."""
    return int(text.rpartition(STAMP)[2])


def reply(burst: Burst, session_id: str) -> Iterator[Any]:
    """The SDK messages answering one query, with pauses between them: a float item means "sleep".

    Pacing is by schedule (delta i is due at start + i/rate), so a late wake-up is caught up at once.
    """
    start = time.monotonic()
    yield SystemMessage(subtype="init", data={"type": "system", "subtype": "init", "session_id": session_id, "model": MODEL, "tools": []})
    for first in range(0, burst.events, MESSAGE_DELTAS):
        count = min(MESSAGE_DELTAS, burst.events - first)
        message_id = f"msg_{session_id[:8]}{first:012d}"
        stream = _stream_events(session_id, message_id, count)
        yield next(stream)  # message_start
        yield next(stream)  # content_block_start
        for i in range(first, first + count):
            if burst.rate:
                delay = start + i / burst.rate - time.monotonic()
                if delay > 0:
                    yield delay
            if i % burst.chunk == 0:
                yield 0.0  # hand the loop a turn, as the SDK's memory stream does
            text = f"{PHRASES[i % len(PHRASES)]}{STAMP}{time.monotonic_ns()}"
            yield StreamEvent(
                uuid=f"{session_id[:24]}{i:012x}",
                session_id=session_id,
                event={"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
        yield from stream  # content_block_stop, message_delta, message_stop
        text = "".join(PHRASES[i % len(PHRASES)] for i in range(first, first + count))
        yield AssistantMessage(
            content=[TextBlock(text=text)], model=MODEL, message_id=message_id, stop_reason="end_turn", session_id=session_id,
            usage={"input_tokens": 12, "output_tokens": 3 * count},
        )
    duration_ms = int((time.monotonic() - start) * 1000)
    yield ResultMessage(
        subtype="success", duration_ms=duration_ms, duration_api_ms=duration_ms, is_error=False, num_turns=1,
        session_id=session_id, stop_reason="end_turn", total_cost_usd=0.0, result="done",
        usage={"input_tokens": 12, "output_tokens": 3 * burst.events},
    )


def _stream_events(session_id: str, message_id: str, count: int) -> Iterator[StreamEvent]:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1},
        }},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3 * count}},
        {"type": "message_stop"},
    ]
    for event in events:
        yield StreamEvent(uuid=str(uuid.uuid4()), session_id=session_id, event=event)


class SyntheticAgent:
    """An `AgentRunner` (see gateway/sessions/runner.py) whose answers come from `reply`."""

    def __init__(self, hooks: RunnerHooks, resume: str | None) -> None:
        self.claude_session_id: str | None = resume or str(uuid.uuid4())
        self._hooks = hooks
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pass

    async def query(self, message: dict[str, Any]) -> None:
        burst = msgspec.json.decode(message["message"]["content"], type=Burst)
        self._task = asyncio.create_task(self._produce(burst), name="synthetic-agent")

    async def _produce(self, burst: Burst) -> None:
        on_message = self._hooks.on_message
        for item in reply(burst, self.claude_session_id or ""):
            if item.__class__ is float:
                await asyncio.sleep(item)
            else:
                on_message(item)

    async def interrupt(self) -> None:
        await self.stop()
        self._hooks.on_message(ResultMessage(
            subtype="error_during_execution", duration_ms=0, duration_api_ms=0, is_error=True, num_turns=1,
            session_id=self.claude_session_id or "", terminal_reason="interrupted",
        ))

    async def set_model(self, model: str | None) -> None:
        pass

    async def set_permission_mode(self, mode: str) -> None:
        pass

    def adopt(self, hooks: RunnerHooks) -> None:
        """Report to `hooks` from now on (a stopping session retires its runner this way, then stops it,
        which cancels the producer before it runs again)."""
        self._hooks = hooks

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
