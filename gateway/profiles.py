"""Operator-defined profiles and the only ways a client may narrow them."""

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec
from claude_agent_sdk.types import PermissionUpdate

from gateway.wire.client import EFFORTS, Effort, Open, OutputFormat, PermissionMode, PermissionUpdateType, Thinking
from gateway.wire.errors import ErrorCode, GatewayError

SAFE_MODES: list[PermissionMode] = ["default", "acceptEdits", "plan"]


class _Server(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    pass


class StdioServer(_Server, tag="stdio"):
    """A command the CLI runs and speaks MCP with over stdin/stdout."""

    command: str
    args: list[str] = []
    env: dict[str, str] = {}


class HttpServer(_Server, tag="http"):
    url: str
    headers: dict[str, str] = {}


class SseServer(_Server, tag="sse"):
    url: str
    headers: dict[str, str] = {}


class SdkServer(_Server, tag="sdk"):
    """An in-process server: `factory` ("package.module:function") returns `create_sdk_mcp_server(...)`,
    called once per CLI start."""

    factory: str


McpServer = StdioServer | HttpServer | SseServer | SdkServer


class Agent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A subagent the model may delegate to (the Task tool), as the SDK's AgentDefinition."""

    description: str
    prompt: str
    tools: list[str] | None = None  # None: the session's tools
    model: str | None = None  # an alias (sonnet, opus, haiku, inherit) or a model id


HookEvent = Literal[
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "UserPromptSubmit", "Stop", "SubagentStop", "PreCompact",
    "Notification", "SubagentStart", "PermissionRequest",
]


class Hook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A hook the gateway runs in its own process: `factory` ("package.module:function") returns the
    SDK hook callback, `async (input, tool_use_id, context) -> dict`. A PreToolUse hook is the one
    way to gate every tool call, also those `allowed_tools` lets run without asking."""

    event: HookEvent
    factory: str
    matcher: str | None = None  # e.g. a tool name, or "Write|Edit"
    timeout_s: float | None = None  # the SDK's default: 60
    on_failure: Literal["continue", "block"] | None = None  # block: a hook that fails blocks the action


class Profile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an operator allows a session to be. Clients pick one by name and can only narrow it."""

    name: str = ""
    description: str = ""
    model: str | None = None
    models: list[str] | None = None  # None: any model the API accepts
    permission_mode: PermissionMode = "default"
    permission_modes: list[PermissionMode] = msgspec.field(default_factory=lambda: list(SAFE_MODES))
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    system_prompt: str | None = None
    append_system_prompt: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    approval_timeout_s: float = 300.0
    # Which of the CLI's permission suggestions a client may apply with `apply_suggestions`.
    permission_updates: list[PermissionUpdateType] = msgspec.field(default_factory=lambda: ["addRules"])
    # Structured output for every session of the profile; or, with `client_output_format`, a
    # client's `open` may choose one when the profile sets none.
    output_format: OutputFormat | None = None
    client_output_format: bool = False
    # Extended thinking and effort as the SDK names them; None leaves the CLI's default. Clients
    # may only narrow them (`narrow_thinking`, `narrow_effort`).
    thinking: Thinking | None = None
    effort: Effort | None = None
    # The CLI keeps a checkpoint of the files it edits at each query, so `rewind_files` can undo them.
    enable_file_checkpointing: bool = False
    # What the agent may use beyond the CLI's own tools; only the operator declares these (a stdio
    # server runs a command on the host). Sessions load no other MCP server.
    mcp_servers: dict[str, McpServer] = {}
    agents: dict[str, Agent] = {}
    hooks: list[Hook] = []
    # The CLI's slash commands clients may run (`run_command`), without the slash; `compact` always.
    slash_commands: list[str] = []
    env: dict[str, str] = {}

    def __post_init__(self) -> None:
        if self.permission_mode not in self.permission_modes:
            raise ValueError(f"profile {self.name!r}: permission_mode {self.permission_mode!r} not in permission_modes")
        if self.models is not None and self.model is not None and self.model not in self.models:
            raise ValueError(f"profile {self.name!r}: model {self.model!r} not in models")

    def check_model(self, model: str) -> None:
        """Refuse a model outside the allow-list: at `open` and on every later change."""
        if self.models is not None and model not in self.models:
            raise GatewayError(ErrorCode.MODEL_NOT_ALLOWED, f"model {model!r} is not allowed by profile {self.name!r}")

    def check_mode(self, mode: str) -> None:
        if mode not in self.permission_modes:
            raise GatewayError(ErrorCode.MODE_NOT_ALLOWED, f"permission mode {mode!r} is not allowed by profile {self.name!r}")

    def check_command(self, command: str) -> None:
        if command not in self.slash_commands:
            raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"/{command} is not a command profile {self.name!r} lets clients run")

    def check_mcp_server(self, name: str) -> None:
        if name not in self.mcp_servers:
            raise GatewayError(ErrorCode.UNKNOWN_MCP_SERVER, f"profile {self.name!r} declares no MCP server {name!r}")

    def check_update(self, update: PermissionUpdate, tool_name: str) -> None:
        """Refuse a suggested permission update the profile doesn't permit. Rules may name only the
        tool being answered (a Bash prompt can't allow Write); a mode must pass `check_mode`."""
        if update.type not in self.permission_updates:
            raise GatewayError(
                ErrorCode.SUGGESTION_NOT_ALLOWED, f"{update.type} suggestions are not allowed by profile {self.name!r}"
            )
        others = sorted({rule.tool_name for rule in update.rules or () if rule.tool_name != tool_name})
        if others:
            raise GatewayError(ErrorCode.SUGGESTION_NOT_ALLOWED, f"the suggestion names other tools than {tool_name}: {others}")
        if update.type == "setMode":
            self.check_mode(update.mode or "")


class SessionSpec(msgspec.Struct, kw_only=True):
    """A profile narrowed by one client's `open`: what the session actually runs with."""

    profile: Profile
    model: str | None
    permission_mode: PermissionMode
    allowed_tools: list[str]
    disallowed_tools: list[str]
    max_turns: int | None
    max_budget_usd: float | None
    output_format: OutputFormat | None = None
    thinking: Thinking | None = None
    effort: Effort | None = None


def narrow(profile: Profile, frame: Open) -> SessionSpec:
    model = frame.model or profile.model
    if frame.model is not None:
        profile.check_model(frame.model)
    mode = frame.permission_mode or profile.permission_mode
    profile.check_mode(mode)
    allowed = profile.allowed_tools
    if frame.allowed_tools is not None:
        extra = sorted(set(frame.allowed_tools) - set(profile.allowed_tools))
        if extra:
            raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"allowed_tools may only narrow the profile; not allowed: {extra}")
        allowed = list(frame.allowed_tools)
    disallowed = profile.disallowed_tools + [t for t in frame.disallowed_tools or [] if t not in profile.disallowed_tools]
    return SessionSpec(
        profile=profile,
        model=model,
        permission_mode=mode,
        allowed_tools=allowed,
        disallowed_tools=disallowed,
        max_turns=_cap(frame.max_turns, profile.max_turns, "max_turns"),
        max_budget_usd=_cap(frame.max_budget_usd, profile.max_budget_usd, "max_budget_usd"),
        output_format=_output_format(profile, frame.output_format),
        thinking=narrow_thinking(profile, frame.thinking),
        effort=narrow_effort(profile, frame.effort),
    )


def narrow_thinking(profile: Profile, asked: Thinking | None) -> Thinking | None:
    """A client may turn thinking off, lower an `enabled` budget, and hide the display (`omitted`);
    nothing more. A profile that leaves thinking to the CLI lets clients only turn it off."""
    if asked is None:
        return profile.thinking
    base = profile.thinking
    if asked.type == "disabled":
        return asked
    fits = base is not None and base.type == asked.type
    if fits and asked.type == "enabled":
        fits = (asked.budget_tokens or 0) <= (base.budget_tokens or 0)  # type: ignore[union-attr]
    if fits and asked.display not in (None, "omitted", base.display):  # type: ignore[union-attr]
        fits = False
    if not fits:
        raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"thinking may only narrow the profile's ({_describe(base)})")
    return asked if asked.display is not None else msgspec.structs.replace(asked, display=base.display)  # type: ignore[union-attr]


def narrow_effort(profile: Profile, asked: Effort | None) -> Effort | None:
    """A client may lower the effort; the CLI's default is `high`."""
    if asked is None:
        return profile.effort
    if EFFORTS.index(asked) > EFFORTS.index(profile.effort or "high"):
        raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"effort {asked!r} is above the profile's ({profile.effort or 'high'!r})")
    return asked


def _describe(thinking: Thinking | None) -> str:
    return "the CLI's default" if thinking is None else msgspec.json.encode(thinking).decode()


def _output_format(profile: Profile, asked: OutputFormat | None) -> OutputFormat | None:
    if asked is None or asked == profile.output_format:
        return profile.output_format
    if profile.output_format is not None or not profile.client_output_format:
        raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"profile {profile.name!r} does not let clients choose output_format")
    return asked


def _cap(asked: Any, limit: Any, name: str) -> Any:
    if asked is None:
        return limit
    if limit is not None and asked > limit:
        raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"{name} {asked} exceeds the profile's limit {limit}")
    return asked


DEMO_PROFILE = Profile(
    name="default",
    description="Read-only tools run freely; shell commands and edits ask first.",
    models=["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
    model="claude-sonnet-4-5",
    allowed_tools=["Read", "Grep", "Glob"],
    max_turns=50,
    approval_timeout_s=300.0,
)


def load_profiles(path: Path | None) -> dict[str, Profile]:
    """Profiles from a TOML file's `[profiles.NAME]` tables, or the built-in `default`."""
    if path is None:
        return {"default": DEMO_PROFILE}
    with path.open("rb") as f:
        doc = tomllib.load(f)
    tables = doc.get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{path}: no [profiles.NAME] tables")
    return {name: msgspec.convert({**body, "name": name}, Profile) for name, body in tables.items()}
