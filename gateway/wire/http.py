"""Bodies of the HTTP API that are not WebSocket frames (`protocol/HTTP.md`; `/openapi.json` is built from them)."""

from typing import Any, Literal

import msgspec

from gateway.profiles import Profile
from gateway.wire import events as ev
from gateway.wire.client import FrameId, Name, Open, Prompt
from gateway.wire.server import SessionInfo


class CreateSession(Open, tag=False):
    """`POST /v1/sessions`: the options of an `open` frame, and optionally a first prompt (run-and-poll).

    `id` makes creation idempotent: re-sending it returns the same session.
    """

    id: FrameId | None = None  # type: ignore[assignment]  # optional here, unlike on a frame
    prompt: Prompt | None = None


class ForkSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/sessions/{id}/fork`: continue the conversation in a new session, from now or from
    just before query `query_id` (the `fork` frame's fields)."""

    query_id: Name | None = None


RunStatus = Literal["pending", "running", "awaiting_approval", "completed", "error", "cancelled"]


class Run(msgspec.Struct, kw_only=True):
    """One query and everything it produced so far, for clients that poll instead of streaming.

    `messages` are this run's transcript events; `streaming_text` is the text of the assistant
    message still being streamed; `last_seq`/`epoch` let a poller switch to the event stream.
    """

    run_id: str
    session_id: str
    status: RunStatus
    prompt: str | list[dict[str, Any]]
    messages: list[ev.AnyEvent]
    pending: list[ev.PermissionRequest | ev.Question]
    streaming_text: str | None = None
    result: ev.TurnResult | None = None
    structured_output: Any = None  # the result's, when the session has an output_format
    epoch: str
    last_seq: int


class SessionStatus(msgspec.Struct, kw_only=True):
    """A session and its latest run: what `POST /v1/sessions` creates and `GET /v1/sessions/{id}` polls.

    `run` is null until the conversation's first query (and again after a conversation reset).
    """

    session: SessionInfo
    run: Run | None = None


class SessionList(msgspec.Struct):
    sessions: list[SessionInfo]


class ClosedSessions(msgspec.Struct):
    """Reply to `DELETE /v1/sessions?idle_for_s=N`: the ids of the sessions it closed."""

    closed: list[str]


# Server commands, URLs and headers, agents' prompts and hooks are the operator's: `get_mcp_status` names the servers.
_PRIVATE_PROFILE_FIELDS = ("env", "system_prompt", "append_system_prompt", "mcp_servers", "agents", "hooks")
ProfileView = msgspec.defstruct(
    "ProfileView",
    [(f.name, f.type) for f in msgspec.structs.fields(Profile) if f.name not in _PRIVATE_PROFILE_FIELDS],
    kw_only=True,
)
"""A profile as clients see it: what they may choose and narrow; never its environment or prompts."""


def profile_view(profile: Profile) -> Any:
    return msgspec.convert(msgspec.to_builtins(profile), ProfileView)


class ProfileList(msgspec.Struct):
    profiles: list[ProfileView]  # type: ignore[valid-type]


class McpServer(msgspec.Struct, kw_only=True):
    name: str
    status: str


class ProfileCheck(msgspec.Struct, kw_only=True):
    """A profile's dry run: its CLI started and answered one tiny turn with the profile's settings.

    `ok` is false when the CLI didn't start, the turn failed (model unknown, API unreachable) or an
    MCP server didn't connect. `warnings` name allowed or disallowed tools the CLI doesn't list
    (typos, or tools it loads lazily).
    """

    profile: str
    ok: bool
    duration_ms: int
    cli_version: str | None = None
    model: str | None = None
    tools: list[str] = []
    mcp_servers: list[McpServer] = []
    errors: list[str] = []
    warnings: list[str] = []


class Ticket(msgspec.Struct):
    """A short-lived credential for `?ticket=` (EventSource and WebSocket in browsers); `expires_at` is unix ms."""

    ticket: str
    expires_at: int


class Health(msgspec.Struct):
    """`demo`: an offline scripted model answers (no real model, nothing is billed); the chat page says so."""

    status: Literal["ok"]
    demo: bool = False


class ReadinessCheck(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    detail: str


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready", "unready"]
    checks: list[ReadinessCheck]


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem document; `code` is the same stable code a WebSocket `error` frame carries.

    `id` is the id of the frame that failed, when one could be read. `retry_after_ms` (with
    `at_capacity`) is the `Retry-After` header in milliseconds.
    """

    type: str
    title: str
    status: int
    detail: str
    code: str
    id: str | None = None
    retry_after_ms: int | None = None
