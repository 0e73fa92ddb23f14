"""SDK messages to wire events: add the `type` discriminators `asdict` drops, strip host details."""

import dataclasses
import re
from typing import Any

import msgspec

from claude_agent_sdk import (
    AssistantMessage,
    RateLimitEvent,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk.types import (
    ServerToolResultBlock,
    ServerToolUseBlock,
    TaskNotificationMessage,
    TaskProgressMessage,
    TaskStartedMessage,
    TaskUpdatedMessage,
)

from gateway.wire import events as ev

_BLOCK_TYPES: dict[type, str] = {
    TextBlock: "text",
    ThinkingBlock: "thinking",
    ToolUseBlock: "tool_use",
    ToolResultBlock: "tool_result",
    ServerToolUseBlock: "server_tool_use",
    ServerToolResultBlock: "server_tool_result",
}
_TASK_TYPES = (TaskStartedMessage, TaskProgressMessage, TaskNotificationMessage, TaskUpdatedMessage)
# System-message keys that name host paths, sockets or configuration; never sent to browsers.
# Matched by pattern too, so keys a newer CLI adds (`original_cwd`, `*_dir`...) stay out.
HOST_KEYS = frozenset({"apiKeySource", "plugins", "mcp_servers"})
# CLI-internal diagnostics that show up in results' `errors` ("[ede_diagnostic] result_type=...").
INTERNAL_ERROR = re.compile(r"\[\w*diagnostic\w*\]")
HOST_KEY_PATTERN = re.compile(r"cwd|path|dir|socket|file", re.IGNORECASE)


def block(b: Any) -> dict[str, Any]:
    out = {"type": _BLOCK_TYPES.get(type(b), "unknown")}
    out.update(dataclasses.asdict(b))
    return out


def content(c: str | list[Any]) -> str | list[dict[str, Any]]:
    return c if isinstance(c, str) else [block(b) for b in c]


def scrub(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in HOST_KEYS and not HOST_KEY_PATTERN.search(k)}


def is_local_command_echo(msg: UserMessage) -> bool:
    """`set_model` makes the CLI echo a `<local-command-stdout>` user message: noise for a chat UI."""
    return isinstance(msg.content, str) and msg.content.startswith("<local-command-")


def task_event(msg: TaskStartedMessage | TaskProgressMessage | TaskNotificationMessage | TaskUpdatedMessage) -> ev.Task:
    """One shape for the four task messages; the CLI's own fields stay in `data`."""
    task = ev.Task(subtype=msg.subtype, task_id=msg.task_id, data=scrub(msg.data))  # type: ignore[arg-type]
    if isinstance(msg, TaskUpdatedMessage):
        task.status = msg.status or msg.patch.get("status")
        task.description = msg.patch.get("description")
        return task
    task.tool_use_id = msg.tool_use_id
    if isinstance(msg, TaskNotificationMessage):
        task.status, task.summary = msg.status, msg.summary
        task.usage = dict(msg.usage) if msg.usage else None
        return task
    task.status, task.description = "running", msg.description
    if isinstance(msg, TaskStartedMessage):
        task.task_type = msg.task_type
    else:
        task.last_tool_name, task.usage = msg.last_tool_name, dict(msg.usage)
    return task


def stream_event(msg: StreamEvent) -> ev.Stream:
    """Token deltas and block boundaries: most of a turn's messages, forwarded as they are."""
    return ev.Stream(event=msg.event, parent_tool_use_id=msg.parent_tool_use_id)


def to_event(msg: Any, query_id: str | None) -> ev.EventBody | None:
    """The wire event for one SDK message, or None for messages clients don't get."""
    if isinstance(msg, StreamEvent):
        return stream_event(msg)
    if isinstance(msg, AssistantMessage):
        return ev.AssistantMessage(
            content=[block(b) for b in msg.content],
            model=msg.model,
            message_id=msg.message_id,
            parent_tool_use_id=msg.parent_tool_use_id,
            usage=msg.usage,
            error=msg.error,
            stop_reason=msg.stop_reason,
        )
    if isinstance(msg, UserMessage):
        if is_local_command_echo(msg):
            return None
        return ev.UserMessage(
            content=content(msg.content),
            parent_tool_use_id=msg.parent_tool_use_id,
            tool_use_result=msg.tool_use_result,
            uuid=msg.uuid,
            origin=dict(msg.origin) if msg.origin else None,
        )
    if isinstance(msg, ResultMessage):
        return ev.TurnResult(
            query_id=query_id,
            subtype=msg.subtype,
            is_error=msg.is_error,
            duration_ms=msg.duration_ms,
            duration_api_ms=msg.duration_api_ms,
            num_turns=msg.num_turns,
            total_cost_usd=msg.total_cost_usd,
            usage=msg.usage,
            result=msg.result,
            stop_reason=msg.stop_reason,
            terminal_reason=msg.terminal_reason,
            permission_denials=msg.permission_denials,
            errors=[e for e in msg.errors if not INTERNAL_ERROR.match(e)] if msg.errors else msg.errors,
            structured_output=msg.structured_output,
            model_usage=msgspec.convert(msg.model_usage, dict[str, ev.ModelUsage]) if msg.model_usage else None,
            api_error_status=msg.api_error_status,
            deferred_tool_use=msgspec.convert(dataclasses.asdict(msg.deferred_tool_use), ev.DeferredToolUse) if msg.deferred_tool_use else None,
            origin=dict(msg.origin) if msg.origin else None,
        )
    if isinstance(msg, _TASK_TYPES):
        return task_event(msg)
    if isinstance(msg, SystemMessage):
        return ev.System(subtype=msg.subtype, data=scrub(msg.data))
    if isinstance(msg, RateLimitEvent):
        info = msg.rate_limit_info
        return ev.RateLimit(info=ev.RateLimitInfo(
            status=info.status, resets_at=info.resets_at, rate_limit_type=info.rate_limit_type, utilization=info.utilization,
            overage_status=info.overage_status, overage_resets_at=info.overage_resets_at,
            overage_disabled_reason=info.overage_disabled_reason,
        ))
    return None
