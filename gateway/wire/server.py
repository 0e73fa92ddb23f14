"""Frames the gateway sends. A WebSocket message holds one or more frames separated by "\\n"."""

from typing import Any, Literal

import msgspec

from gateway.wire.events import AnyEvent, PermissionRequest, Question, RateLimitInfo, SessionState


class ServerFrame(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    pass


class EventFrame(ServerFrame, tag="event"):
    """One logged event: `seq` counts from 1 per session epoch with no gaps; `ts` is unix ms."""

    seq: int
    epoch: str
    ts: int
    event: AnyEvent


class Ack(ServerFrame, tag="ack"):
    """A frame was accepted. `duplicate` when its id was already executed (the result is the first one's)."""

    id: str
    result: dict[str, Any] | None = None
    duplicate: bool = False


class Error(ServerFrame, tag="error"):
    """`retry_after_ms`: with `at_capacity`, how long to wait before trying again."""

    code: str
    message: str
    id: str | None = None
    retry_after_ms: int | None = None


class Pong(ServerFrame, tag="pong"):
    id: str
    ts: int


class ContextCategory(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    name: str
    tokens: int
    is_deferred: bool = False  # loaded on demand: not in the context yet


class ContextUsage(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`get_context_usage`'s result, spelled as the CLI spells it (its `/context`), without host
    details (memory file paths) or drawing data. `percentage` (0-100) is `totalTokens` of `maxTokens`,
    the window less the auto-compact buffer; `rawMaxTokens` is the model's whole window."""

    categories: list[ContextCategory]
    total_tokens: int
    max_tokens: int
    raw_max_tokens: int
    percentage: float
    model: str | None = None
    is_auto_compact_enabled: bool | None = None
    auto_compact_threshold: int | None = None


class McpTool(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    description: str | None = None


class McpServerStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """One of the profile's MCP servers, as the CLI reports it (its config, a host detail, left out).
    `status`: connected, failed, needs-auth, pending or disabled."""

    name: str
    status: str
    server_info: dict[str, Any] | None = None
    error: str | None = None
    tools: list[McpTool] | None = None


class SessionLimits(msgspec.Struct, kw_only=True):
    """The bounds a client plans around. The log keeps at most `log_max_events`, `log_max_bytes` and
    `log_max_age_s` of events (whichever is smallest; a cursor older than that gets a `reset`); a
    snapshot's transcript holds the last `transcript_max_events`; at most `max_queued_queries` wait;
    a client frame (an HTTP body) is at most `max_frame_bytes`."""

    log_max_events: int
    log_max_bytes: int
    log_max_age_s: float
    transcript_max_events: int
    max_queued_queries: int
    max_frame_bytes: int


class TaskInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A background task still running (from its `task` events), so a client attaching later sees it."""

    task_id: str
    description: str | None = None
    task_type: str | None = None
    tool_use_id: str | None = None
    last_tool_name: str | None = None


class SessionInfo(msgspec.Struct, kw_only=True):
    session_id: str
    profile: str
    model: str | None
    permission_mode: str
    state: SessionState
    epoch: str
    last_seq: int
    created_at: int
    last_activity: int
    turns: int
    total_cost_usd: float
    queued: int
    pending: list[PermissionRequest | Question]
    allowed_models: list[str] | None
    allowed_modes: list[str]
    limits: SessionLimits
    rate_limit: RateLimitInfo | None = None  # the latest `rate_limit` event's
    tasks: list[TaskInfo] = []  # background tasks still running


class Attached(ServerFrame, tag="attached"):
    """Reply to `open`/`attach`: events after `after` follow (replay), then the live tail."""

    id: str
    connection: str
    after: int
    session: SessionInfo
    protocol: int


class Snapshot(msgspec.Struct, kw_only=True):
    """Everything a client needs to rebuild its view as of `session.last_seq`."""

    session: SessionInfo
    transcript: list[AnyEvent]
    streaming_text: str | None = None  # an assistant message's text still being streamed
    streaming_thinking: str | None = None  # its thinking, streamed before the text


ResetReason = Literal["cursor_too_old", "cursor_ahead", "epoch_mismatch"]


class Reset(ServerFrame, tag="reset"):
    """The client's cursor can't be served: events after it were evicted (`cursor_too_old`), it is
    beyond the last event (`cursor_ahead`), or it names another epoch: rebuild from this snapshot."""

    reason: ResetReason
    snapshot: Snapshot
    id: str | None = None
    connection: str | None = None


AnyServerFrame = EventFrame | Ack | Error | Pong | Attached | Reset
