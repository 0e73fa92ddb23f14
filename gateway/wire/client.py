"""Frames a client sends. Every frame has a client-chosen `id` the gateway acknowledges or rejects."""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

FRAME_ID_MAX = 128
FrameId = Annotated[str, Meta(min_length=1, max_length=FRAME_ID_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]
# A prompt is plain text or Anthropic content blocks (text, image, document).
Prompt = Annotated[str, Meta(min_length=1)] | Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=100)]


class ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: FrameId


class Open(ClientFrame, tag="open"):
    """Start a new session from an operator profile; options may only narrow the profile."""

    profile: Name = "default"
    model: Name | None = None
    permission_mode: PermissionMode | None = None
    allowed_tools: list[Name] | None = None
    disallowed_tools: list[Name] | None = None
    max_turns: Annotated[int, Meta(ge=1)] | None = None
    max_budget_usd: Annotated[float, Meta(gt=0)] | None = None


class Attach(ClientFrame, tag="attach"):
    """Join an existing session; `after` is the last sequence number this client applied."""

    session_id: Name
    after: Annotated[int, Meta(ge=0)] = 0
    epoch: Name | None = None


class Query(ClientFrame, tag="query"):
    prompt: Prompt


class Interrupt(ClientFrame, tag="interrupt"):
    pass


class PermissionResponse(ClientFrame, tag="permission_response"):
    """Answer a `permission_request` (or decline a `question` with `deny`)."""

    request_id: Name
    decision: Literal["allow", "deny"]
    updated_input: dict[str, Any] | None = None
    message: Annotated[str, Meta(max_length=10_000)] | None = None
    interrupt: bool = False
    apply_suggestions: list[Annotated[int, Meta(ge=0)]] = []


class QuestionResponse(ClientFrame, tag="question_response"):
    """Answer a `question`: question text -> chosen option label(s) or free text."""

    request_id: Name
    answers: dict[str, str | list[str]]


class SetModel(ClientFrame, tag="set_model"):
    model: Name


class SetPermissionMode(ClientFrame, tag="set_permission_mode"):
    mode: PermissionMode


class ResetConversation(ClientFrame, tag="reset_conversation"):
    """Soft: a fresh conversation on the same CLI. Hard: a fresh CLI too."""

    mode: Literal["soft", "hard"] = "soft"


class Close(ClientFrame, tag="close"):
    pass


class Ping(ClientFrame, tag="ping"):
    pass


SessionFrame = (
    Query
    | Interrupt
    | PermissionResponse
    | QuestionResponse
    | SetModel
    | SetPermissionMode
    | ResetConversation
    | Close
)
AnyClientFrame = Open | Attach | Ping | SessionFrame
