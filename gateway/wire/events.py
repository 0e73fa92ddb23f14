"""Events a session emits. Each is numbered and logged; `EventFrame` carries one to clients."""

from typing import Any, Literal

import msgspec

SessionState = Literal["starting", "idle", "running", "awaiting_approval", "interrupted", "hibernated", "closed", "failed"]


class Actor(msgspec.Struct, omit_defaults=True):
    """Who did something: the principal and the connection (tab) it came through."""

    principal: str
    connection: str | None = None


class EventBody(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    pass


class StateChanged(EventBody, tag="state"):
    state: SessionState
    reason: str | None = None


class UserQuery(EventBody, tag="user_query"):
    """A client's query, as accepted; `queued` when a turn was already running."""

    query_id: str
    prompt: str | list[dict[str, Any]]
    by: Actor
    queued: bool = False


class TurnStarted(EventBody, tag="turn_started"):
    query_id: str


class Stream(EventBody, tag="stream"):
    """A raw Anthropic Messages streaming event (token deltas, block starts and stops)."""

    event: dict[str, Any]
    parent_tool_use_id: str | None = None


class AssistantMessage(EventBody, tag="assistant_message"):
    content: list[dict[str, Any]]
    model: str
    message_id: str | None = None
    parent_tool_use_id: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    stop_reason: str | None = None


class UserMessage(EventBody, tag="user_message"):
    """A user-role message from the agent loop: tool results, interruption notices."""

    content: str | list[dict[str, Any]]
    parent_tool_use_id: str | None = None
    tool_use_result: Any = None


class System(EventBody, tag="system"):
    """A CLI system message with host details removed (`init`, `status`, ...)."""

    subtype: str
    data: dict[str, Any]


class Task(EventBody, tag="task"):
    """Background task progress: task_started, task_progress, task_notification, task_updated."""

    subtype: str
    data: dict[str, Any]


class TurnResult(EventBody, tag="result"):
    """A turn ended. `cost_usd` is this turn's cost; `total_cost_usd` the session's so far."""

    query_id: str | None
    subtype: str
    is_error: bool
    duration_ms: int
    duration_api_ms: int
    num_turns: int
    cost_usd: float | None = None
    total_cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    result: str | None = None
    stop_reason: str | None = None
    terminal_reason: str | None = None
    permission_denials: list[Any] | None = None
    errors: list[str] | None = None


class PermissionRequest(EventBody, tag="permission_request"):
    """The agent wants a tool that needs approval; answer before `expires_at` (unix ms)."""

    request_id: str
    tool_name: str
    input: dict[str, Any]
    expires_at: int
    tool_use_id: str | None = None
    suggestions: list[dict[str, Any]] = []
    title: str | None = None
    display_name: str | None = None
    description: str | None = None
    decision_reason: str | None = None
    agent_id: str | None = None


class Question(EventBody, tag="question"):
    """AskUserQuestion: pick option labels per question before `expires_at` (unix ms)."""

    request_id: str
    questions: list[dict[str, Any]]
    expires_at: int
    tool_use_id: str | None = None


class RequestResolved(EventBody, tag="request_resolved"):
    """How a permission request or question ended, and who ended it (null for the gateway)."""

    request_id: str
    outcome: Literal["allowed", "denied", "answered", "expired", "cancelled"]
    by: Actor | None = None
    updated_input: dict[str, Any] | None = None
    message: str | None = None
    answers: dict[str, str | list[str]] | None = None


class ModelChanged(EventBody, tag="model_changed"):
    model: str
    by: Actor


class PermissionModeChanged(EventBody, tag="permission_mode_changed"):
    mode: str
    by: Actor


class ConversationReset(EventBody, tag="conversation_reset"):
    mode: Literal["soft", "hard"]
    by: Actor


class AgentError(EventBody, tag="error"):
    """Something went wrong in the agent (CLI exit, SDK error); `recoverable` means the session carries on."""

    code: str
    message: str
    recoverable: bool


class RateLimit(EventBody, tag="rate_limit"):
    info: dict[str, Any]


AnyEvent = (
    StateChanged
    | UserQuery
    | TurnStarted
    | Stream
    | AssistantMessage
    | UserMessage
    | System
    | Task
    | TurnResult
    | PermissionRequest
    | Question
    | RequestResolved
    | ModelChanged
    | PermissionModeChanged
    | ConversationReset
    | AgentError
    | RateLimit
)
