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
    """A client's query, as accepted; `queued` when a turn was already running; `command` when the
    agent runs it as its own command (`compact`, `run_command`) rather than as the text sent."""

    query_id: str
    prompt: str | list[dict[str, Any]]
    by: Actor
    queued: bool = False
    command: bool = False


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
    """A user-role message from the agent loop: tool results, interruption notices. `origin` says
    what produced a message no person typed (`{"kind": "task-notification"}`...)."""

    content: str | list[dict[str, Any]]
    parent_tool_use_id: str | None = None
    tool_use_result: Any = None
    uuid: str | None = None
    origin: dict[str, Any] | None = None


class System(EventBody, tag="system"):
    """A CLI system message with host details removed (`init`, `status`, ...)."""

    subtype: str
    data: dict[str, Any]


TaskSubtype = Literal["task_started", "task_progress", "task_notification", "task_updated"]


class Task(EventBody, tag="task"):
    """A background task (a long or backgrounded shell command, a subagent) started, progressed,
    reported back (`task_notification`: completed, failed or stopped) or changed (`task_updated`).
    `status` is `running` until a terminal one: `completed`, `failed`, `stopped`, `killed`.
    `data` is the CLI's whole message, host paths removed."""

    subtype: TaskSubtype
    task_id: str
    data: dict[str, Any]
    status: str | None = None
    description: str | None = None
    task_type: str | None = None  # local_bash, local_agent, ...
    tool_use_id: str | None = None
    last_tool_name: str | None = None
    summary: str | None = None
    usage: dict[str, Any] | None = None


class ModelUsage(msgspec.Struct, kw_only=True, rename="camel"):
    """One model's share of a turn, spelled as the CLI spells it. `contextWindow` is the model's
    window in tokens: with the input of the turn's last request it tells how full the context is."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    thinking_tokens: int = 0
    web_search_requests: int = 0
    cost_usd: float = msgspec.field(default=0.0, name="costUSD")
    context_window: int | None = None
    max_output_tokens: int | None = None


class DeferredToolUse(msgspec.Struct, kw_only=True):
    """A tool call a PreToolUse hook deferred: the turn stopped before running it."""

    id: str
    name: str
    input: dict[str, Any]


class TurnResult(EventBody, tag="result"):
    """A turn ended. `cost_usd` is this turn's cost; `total_cost_usd` the session's so far.
    `structured_output` is the JSON the agent returned when the session has an `output_format`."""

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
    structured_output: Any = None
    model_usage: dict[str, ModelUsage] | None = None
    api_error_status: int | None = None
    deferred_tool_use: DeferredToolUse | None = None
    origin: dict[str, Any] | None = None


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


class FilesRewound(EventBody, tag="files_rewound"):
    """`rewind_files` put the files back as they were when `query_id` was sent."""

    query_id: str
    by: Actor


class ConversationReset(EventBody, tag="conversation_reset"):
    mode: Literal["soft", "hard"]
    by: Actor


class AgentError(EventBody, tag="error"):
    """Something went wrong in the agent (CLI exit, SDK error); `recoverable` means the session carries on."""

    code: str
    message: str
    recoverable: bool


RateLimitStatus = Literal["allowed", "allowed_warning", "rejected"]


class RateLimitInfo(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The API's subscription rate-limit state, spelled as the CLI spells it. `resetsAt` is unix
    seconds; `utilization` 0-1; `rateLimitType` the window (`five_hour`, `seven_day`, ...)."""

    status: RateLimitStatus
    resets_at: int | None = None
    rate_limit_type: str | None = None
    utilization: float | None = None
    overage_status: RateLimitStatus | None = None
    overage_resets_at: int | None = None
    overage_disabled_reason: str | None = None


RecoveryReason = Literal["owner_lost", "handover"]


class AgentRecovered(EventBody, tag="agent_recovered"):
    """Another replica runs this session from now on (PROTOCOL.md §4): the one that ran it was lost
    (`owner_lost`) or shut down and handed it over (`handover`).

    Everything logged before stays and `seq` goes on in the same epoch. Just before this event the
    new owner settled what the old one left open: pending requests `expired`, a turn still running
    a `result` with subtype `owner_lost`. `ownerless_ms`: from the old owner's last lease renewal
    (its handover) to the adoption.
    """

    reason: RecoveryReason
    ownerless_ms: int


class RateLimit(EventBody, tag="rate_limit"):
    """The rate-limit state changed; the latest is also `session.rate_limit`."""

    info: RateLimitInfo


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
    | FilesRewound
    | AgentError
    | AgentRecovered
    | RateLimit
)
