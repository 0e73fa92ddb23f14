"""ClaudeAgentOptions for one session: only the operator's settings reach the CLI, never a client's."""

import functools
import importlib
import os
import shutil
from pathlib import Path
from typing import Any

import claude_agent_sdk
import msgspec
from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions, HookMatcher, SessionStore

from gateway.config import Settings
from gateway.profiles import Hook, McpServer, Profile, SdkServer, SessionSpec
from gateway.sessions import proctree


def keep_sandbox_placeholders(directory: Path) -> None:
    """Keep `.claude/` and `.mcp.json` in a directory that several CLIs work under.

    The CLI's Bash sandbox creates both in every ancestor of its working directory for the length
    of a command, then deletes them, so two CLIs under one ancestor race: one deletes what the
    other's bwrap is about to bind ("bwrap: Can't get type of source .../.mcp.json"). Ones that
    already exist are left alone.
    """
    (directory / ".claude").mkdir(parents=True, exist_ok=True)
    marker = directory / ".mcp.json"
    if not marker.exists():
        marker.write_text('{"mcpServers": {}}\n')


@functools.cache
def bwrap_installed() -> bool:
    """Looked up once per process: a PATH scan is file-system work, and sessions start on the event loop."""
    return shutil.which("bwrap") is not None


def tool_isolation_enabled(settings: Settings) -> bool:
    """The CLI refuses to start with env scrubbing on but no bubblewrap, so `auto` checks first."""
    if settings.tool_env_isolation == "off":
        return False
    return settings.tool_env_isolation == "on" or bwrap_installed()


def cli_path(configured: str) -> str | None:
    """The CLI to run: the configured one, else the one bundled with claude-agent-sdk, else `claude` on PATH (the SDK's order)."""
    if configured:
        return configured
    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return str(bundled) if bundled.is_file() else shutil.which("claude")


@functools.cache
def launched_cli(configured: str) -> str:
    """The CLI `launch-cli` runs, looked up once per process: sessions start on the event loop."""
    return cli_path(configured) or "claude"


def cli_env(settings: Settings, spec: SessionSpec, home: Path, marker: str) -> dict[str, str]:
    """The CLI's environment: allow-listed gateway variables, the profile's, per-session dirs, and
    the marker that every process the CLI starts inherits (see `proctree`).

    The SDK lays these over the gateway's whole environment, which is why `serve` scrubs that first.
    """
    allow = {name.strip() for name in settings.cli_env_allowlist.split(",") if name.strip()}
    env = {name: value for name, value in os.environ.items() if name in allow}
    env.update(spec.profile.env)
    env.update(
        HOME=str(home),
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
    )
    env[proctree.MARKER] = marker
    env[proctree.EXEC] = launched_cli(settings.cli_path)
    if tool_isolation_enabled(settings):
        env["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] = "1"
    if settings.anthropic_api_key:
        env["ANTHROPIC_API_KEY"] = settings.anthropic_api_key
    if settings.anthropic_base_url:
        env["ANTHROPIC_BASE_URL"] = settings.anthropic_base_url
    if "bypassPermissions" in spec.profile.permission_modes:
        env["IS_SANDBOX"] = "1"  # the CLI refuses bypassPermissions as root otherwise; the operator opted in
    return env


def call_factory(factory: str) -> Any:
    """Call an operator's "package.module:function" (an in-process MCP server, a hook callback)."""
    module, _, function = factory.partition(":")
    return getattr(importlib.import_module(module), function)()


def mcp_config(server: McpServer) -> Any:
    """The SDK's config for one of the profile's servers; an in-process one is built by its factory."""
    if isinstance(server, SdkServer):
        return call_factory(server.factory)
    return msgspec.to_builtins(server)


def hook_matchers(hooks: list[Hook]) -> dict[Any, list[HookMatcher]] | None:
    matchers: dict[Any, list[HookMatcher]] = {}
    for hook in hooks:
        matchers.setdefault(hook.event, []).append(
            HookMatcher(matcher=hook.matcher, hooks=[call_factory(hook.factory)], timeout=hook.timeout_s, on_failure=hook.on_failure)
        )
    return matchers or None


def agent_definitions(profile: Profile) -> dict[str, AgentDefinition] | None:
    if not profile.agents:
        return None
    return {name: AgentDefinition(description=a.description, prompt=a.prompt, tools=a.tools, model=a.model) for name, a in profile.agents.items()}


def build_options(
    settings: Settings, spec: SessionSpec, workdir: Path, home: Path, marker: str, resume: str | None, model: str | None, mode: str,
    session_store: SessionStore | None = None,
) -> ClaudeAgentOptions:
    """With a `session_store` the CLI's transcript is mirrored there and `resume` reads it back from there,
    not from `home`. The SDK names the store's keys from `env["CLAUDE_CONFIG_DIR"]` (without it, from the
    gateway's own home: every mirrored entry would be dropped), which `cli_env` always sets. The SDK
    refuses a store together with `enable_file_checkpointing` (checkpoints are local files): a profile
    that enables checkpointing keeps its conversations on the replica's disk only (docs/SDK_COVERAGE.md)."""
    profile = spec.profile
    system_prompt: str | dict[str, str]
    if profile.system_prompt is not None:
        system_prompt = profile.system_prompt
    else:
        system_prompt = {"type": "preset", "preset": "claude_code"}
        if profile.append_system_prompt:
            system_prompt["append"] = profile.append_system_prompt
    return ClaudeAgentOptions(
        cwd=str(workdir),
        env=cli_env(settings, spec, home, marker),
        cli_path=proctree.LAUNCHER,
        setting_sources=[],
        include_partial_messages=True,
        # Off so that the session's own `/clear` works; every client prompt is sent with
        # `client_composed: True`, which is what verbatim_prompts would set (Session._enqueue).
        verbatim_prompts=False,
        permission_mode=mode,  # type: ignore[arg-type]
        model=model,
        allowed_tools=list(spec.allowed_tools),
        disallowed_tools=list(spec.disallowed_tools),
        system_prompt=system_prompt,  # type: ignore[arg-type]
        max_turns=spec.max_turns,
        max_budget_usd=spec.max_budget_usd,
        resume=resume,
        output_format=msgspec.to_builtins(spec.output_format) if spec.output_format else None,
        thinking=msgspec.to_builtins(spec.thinking) if spec.thinking else None,
        effort=spec.effort,
        enable_file_checkpointing=profile.enable_file_checkpointing,
        mcp_servers={name: mcp_config(server) for name, server in profile.mcp_servers.items()},
        strict_mcp_config=True,  # the profile's servers only: none from files in the working directory's ancestors
        agents=agent_definitions(profile),
        hooks=hook_matchers(profile.hooks),
        max_buffer_size=settings.max_cli_message_bytes,  # the SDK's default, 1 MiB, cut off large tool results and replies
        session_store=None if profile.enable_file_checkpointing else session_store,
    )
