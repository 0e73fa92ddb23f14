"""Frames a client sends. Every frame has a client-chosen `id` the gateway acknowledges or rejects."""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

FRAME_ID_MAX = 128
FrameId = Annotated[str, Meta(min_length=1, max_length=FRAME_ID_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]
NonEmpty = Annotated[str, Meta(min_length=1)]
# Text that follows a command on its line: one line, so it can't carry a second command.
OneLine = Annotated[str, Meta(max_length=2000, pattern=r"^[^\r\n]*$")]
PermissionUpdateType = Literal["addRules", "replaceRules", "removeRules", "setMode", "addDirectories", "removeDirectories"]


# ---- prompt content blocks ---------------------------------------------------------------
# The shapes of the Anthropic Messages API user content blocks the CLI takes in a prompt, with
# their required fields. A block the API would refuse (a `text` block without text, an unknown
# type) can wedge the CLI's turn for good, so it is refused here as `bad_frame`, naming the block.


class _Shape(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    pass


class CacheControl(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class Base64Image(_Shape, tag="base64"):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: NonEmpty


class Base64Pdf(_Shape, tag="base64"):
    media_type: Literal["application/pdf"]
    data: NonEmpty


class PlainText(_Shape, tag="text"):
    media_type: Literal["text/plain"]
    data: str


class UrlSource(_Shape, tag="url"):
    url: NonEmpty


class FileSource(_Shape, tag="file"):
    file_id: NonEmpty


class CitationsConfig(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


class TextBlock(_Shape, tag="text"):
    text: NonEmpty
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(_Shape, tag="image"):
    source: Base64Image | UrlSource | FileSource
    cache_control: CacheControl | None = None


class DocumentBlock(_Shape, tag="document"):
    source: Base64Pdf | PlainText | UrlSource | FileSource
    title: str | None = None
    context: str | None = None
    citations: CitationsConfig | None = None
    cache_control: CacheControl | None = None


ContentBlock = TextBlock | ImageBlock | DocumentBlock
# A prompt is plain text or 1-100 content blocks.
Prompt = NonEmpty | Annotated[list[ContentBlock], Meta(min_length=1, max_length=100)]


class OutputFormat(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Structured output: every turn ends with JSON matching `schema` (a JSON Schema object) in
    its result's `structured_output`."""

    type: Literal["json_schema"] = "json_schema"
    schema: dict[str, Any]


Effort = Literal["low", "medium", "high", "xhigh", "max"]
EFFORTS: tuple[Effort, ...] = ("low", "medium", "high", "xhigh", "max")  # least to most


class Thinking(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Extended thinking, as the SDK's `thinking` option: `adaptive` (the model decides), `enabled`
    with a token budget, or `disabled`. `display` `summarized` streams a summary of the thinking,
    `omitted` none."""

    type: Literal["adaptive", "enabled", "disabled"]
    budget_tokens: Annotated[int, Meta(ge=1024)] | None = None
    display: Literal["summarized", "omitted"] | None = None

    def __post_init__(self) -> None:
        if (self.type == "enabled") != (self.budget_tokens is not None):
            raise ValueError("`budget_tokens` goes with `type: enabled`, and only with it")
        if self.type == "disabled" and self.display is not None:
            raise ValueError("`display` does not apply to `type: disabled`")


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
    output_format: OutputFormat | None = None
    thinking: Thinking | None = None
    effort: Effort | None = None


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
    """Answer a `permission_request` (or decline a `question` with `deny`).

    `updated_input` and `apply_suggestions` go with `allow`, `message` and `interrupt` with `deny`:
    an option sent with the other decision is refused (`bad_frame`), never silently ignored.
    """

    request_id: Name
    decision: Literal["allow", "deny"]
    updated_input: dict[str, Any] | None = None
    message: Annotated[str, Meta(max_length=10_000)] | None = None
    interrupt: bool = False
    apply_suggestions: list[Annotated[int, Meta(ge=0)]] = []

    def __post_init__(self) -> None:
        if self.decision == "allow":
            misplaced = [name for name, value in (("message", self.message is not None), ("interrupt", self.interrupt)) if value]
        else:
            misplaced = [name for name, value in (("updated_input", self.updated_input is not None), ("apply_suggestions", bool(self.apply_suggestions))) if value]
        if misplaced:
            other = "deny" if self.decision == "allow" else "allow"
            raise ValueError(f"`{misplaced[0]}` applies only to `decision: {other}`")


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


class GetContextUsage(ClientFrame, tag="get_context_usage"):
    """How full the context window is, by category; the ack's result is a `ContextUsage`."""


class Compact(ClientFrame, tag="compact"):
    """Summarise the conversation so far to free context (the CLI's `/compact`). It runs as a
    query (`query_id` is this frame's id) with its own `result`; `instructions` steer the summary."""

    instructions: OneLine | None = None


class RewindFiles(ClientFrame, tag="rewind_files"):
    """Put the files the agent edited back as they were when query `query_id` was sent (profiles
    with `enable_file_checkpointing`). The conversation itself is not rewound."""

    query_id: Name


CommandName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9:_-]{0,63}$")]


class RunCommand(ClientFrame, tag="run_command"):
    """Run one of the CLI's slash commands the profile lists (`command` without the slash), as a
    query whose `query_id` is this frame's id. Prompts are never run as commands."""

    command: CommandName
    args: OneLine | None = None


class GetMcpStatus(ClientFrame, tag="get_mcp_status"):
    """The profile's MCP servers: connection status, server info and tools."""


class ReconnectMcpServer(ClientFrame, tag="reconnect_mcp_server"):
    name: Name


class ToggleMcpServer(ClientFrame, tag="toggle_mcp_server"):
    """Disable a server (its tools go away) or enable it again."""

    name: Name
    enabled: bool


class Fork(ClientFrame, tag="fork"):
    """A new session of the same principal and settings, continuing this conversation: from its
    current point, or from just before query `query_id` ("edit and resend", "try again"). The ack's
    result names the new session (`session_id`); this one goes on unchanged."""

    query_id: Name | None = None


class StopTask(ClientFrame, tag="stop_task"):
    """Stop a running background task (one of `session.tasks`); its `task` events follow."""

    task_id: Name


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
    | GetContextUsage
    | Compact
    | StopTask
    | RewindFiles
    | Fork
    | RunCommand
    | GetMcpStatus
    | ReconnectMcpServer
    | ToggleMcpServer
    | Close
)
AnyClientFrame = Open | Attach | Ping | SessionFrame
