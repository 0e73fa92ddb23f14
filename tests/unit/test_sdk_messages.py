"""SDK messages the scripted model can't make the CLI send (subscription rate limits, API errors,
deferred tools), fed to a session by a fake runner: what reaches clients, typed."""

from typing import Any

import pytest
from claude_agent_sdk import RateLimitEvent, ResultMessage, UserMessage
from claude_agent_sdk._errors import MessageParseError
from claude_agent_sdk._internal.message_parser import parse_message
from claude_agent_sdk.types import DeferredToolUse, RateLimitInfo

from gateway.sessions.transport import _stream_event
from gateway.wire import events as ev
from tests.unit.test_session_races import Fleet, Sink, fleet, session  # noqa: F401  (fixtures)


def rate_limit(status: str, utilization: float) -> RateLimitEvent:
    info = RateLimitInfo(status=status, resets_at=1795320000, rate_limit_type="five_hour", utilization=utilization,  # type: ignore[arg-type]
                         raw={"status": status, "resetsAt": 1795320000, "surpassedThreshold": 0.8})
    return RateLimitEvent(rate_limit_info=info, uuid="u", session_id="cs")


async def test_the_latest_rate_limit_is_an_event_and_in_the_session_info(session: Any, fleet: Fleet) -> None:
    s, sink = session
    assert s.info().rate_limit is None
    fleet.current.hooks.on_message(rate_limit("allowed_warning", 0.82))
    fleet.current.hooks.on_message(rate_limit("rejected", 1.0))
    events = [e for e in sink.events if e["kind"] == "rate_limit"]
    assert events[0]["info"] == {"status": "allowed_warning", "resetsAt": 1795320000, "rateLimitType": "five_hour", "utilization": 0.82}
    assert s.info().rate_limit == ev.RateLimitInfo(status="rejected", resets_at=1795320000, rate_limit_type="five_hour", utilization=1.0)


async def test_a_result_keeps_the_api_error_status_deferred_tool_and_origin(session: Any, fleet: Fleet) -> None:
    s, sink = session
    fleet.current.hooks.on_message(UserMessage(content="the task finished", uuid="m1", origin={"kind": "task-notification"}))
    fleet.current.hooks.on_message(ResultMessage(
        subtype="error_during_execution", duration_ms=1, duration_api_ms=1, is_error=True, num_turns=1, session_id="cs",
        api_error_status=529, origin={"kind": "task-notification"},
        deferred_tool_use=DeferredToolUse(id="toolu_1", name="Bash", input={"command": "make deploy"}),
        model_usage={"m": {"inputTokens": 5, "outputTokens": 2, "costUSD": 0.5, "contextWindow": 200000, "costBasis": "list"}},  # type: ignore[dict-item]
    ))
    message = next(e for e in sink.events if e["kind"] == "user_message")
    assert message["uuid"] == "m1" and message["origin"] == {"kind": "task-notification"}
    result = next(e for e in sink.events if e["kind"] == "result")
    assert result["api_error_status"] == 529 and result["origin"] == {"kind": "task-notification"}
    assert result["deferred_tool_use"] == {"id": "toolu_1", "name": "Bash", "input": {"command": "make deploy"}}
    assert result["model_usage"]["m"] == {
        "inputTokens": 5, "outputTokens": 2, "cacheReadInputTokens": 0, "cacheCreationInputTokens": 0, "thinkingTokens": 0,
        "webSearchRequests": 0, "costUSD": 0.5, "contextWindow": 200000, "maxOutputTokens": None,
    }


def test_the_transports_stream_events_are_the_sdk_parsers() -> None:
    """The transport builds `StreamEvent`s itself (gateway/sessions/transport.py): field for field what
    the SDK's parser builds, and the parser's error for a line missing a field."""
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    lines = [
        {"type": "stream_event", "uuid": "u1", "session_id": "s", "event": event},
        {"type": "stream_event", "uuid": "u2", "session_id": "s", "event": event, "parent_tool_use_id": "toolu_1",
         "user_message_uuid": "m1", "user_message_uuids": ["m1", "m2"]},
    ]
    for line in lines:
        assert _stream_event(line) == parse_message(line)
    with pytest.raises(MessageParseError):
        _stream_event({"type": "stream_event", "uuid": "u3", "event": event})
