"""Checks an operator runs before users hit a problem: is the CLI runnable, does a profile work end to end."""

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from typing import Any

from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage
from claude_agent_sdk.types import PermissionResultDeny, ToolPermissionContext
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.profiles import Profile, narrow
from gateway.sessions import proctree
from gateway.sessions.agent_options import cli_path
from gateway.sessions.runner import AgentRunner, PermissionResult
from gateway.wire.client import Open
from gateway.wire.http import McpServer, ProfileCheck, ReadinessCheck

PROBE_PROMPT = "This is a connectivity check. Reply with the single word OK."
PROBE_TIMEOUT_S = 60.0
CLI_VERSION_TIMEOUT_S = 15.0


async def cli_runnable(settings: Settings) -> ReadinessCheck:
    """Run `claude --version` as sessions start it, through `launch-cli`: the binary exists, is
    executable and starts on this host, and so do the launcher's `setsid` and `setpriv`."""
    path = await asyncio.to_thread(cli_path, settings.cli_path)
    if path is None:
        return ReadinessCheck(name="cli", ok=False, detail="no Claude Code CLI found (set --cli-path)")
    env = {"DISABLE_AUTOUPDATER": "1", proctree.EXEC: path, "PATH": os.environ.get("PATH", os.defpath)}
    try:
        proc = await asyncio.create_subprocess_exec(
            proctree.LAUNCHER, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
    except OSError as exc:
        return ReadinessCheck(name="cli", ok=False, detail=f"{path}: {exc.strerror}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CLI_VERSION_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ReadinessCheck(name="cli", ok=False, detail=f"{path} --version did not finish in {CLI_VERSION_TIMEOUT_S:.0f} s")
    text = out.decode(errors="replace").strip()
    return ReadinessCheck(name="cli", ok=proc.returncode == 0, detail=text.splitlines()[0] if text else f"exit {proc.returncode}")


def sandbox_available(settings: Settings) -> ReadinessCheck:
    """Tool environment isolation needs bubblewrap: required with `on`, a warning with `auto`."""
    if settings.tool_env_isolation == "off":
        return ReadinessCheck(name="bwrap", ok=True, detail="tool environment isolation is off")
    found = shutil.which("bwrap")
    if found is not None:
        return ReadinessCheck(name="bwrap", ok=True, detail=found)
    required = settings.tool_env_isolation == "on"
    return ReadinessCheck(name="bwrap", ok=not required, detail="bwrap not on PATH: tool calls can read the CLI's credentials")


async def redis_reachable(redis: Redis, settings: Settings) -> ReadinessCheck:
    """A PING answered within `redis_timeout_s`: without Redis no session can be opened, attached or
    resumed on this replica. The deadline also covers a connect that hangs (a frozen server)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.redis_timeout_s):
            await redis.ping()
    except TimeoutError:
        return ReadinessCheck(name="redis", ok=False, detail=f"no answer to PING within {settings.redis_timeout_s:g} s")
    except (RedisError, OSError) as exc:
        return ReadinessCheck(name="redis", ok=False, detail=f"unreachable: {exc}")
    return ReadinessCheck(name="redis", ok=True, detail=f"PING answered in {(time.monotonic() - started) * 1000:.1f} ms")


class ProfileProbe:
    """Stands in for a Session towards the runner factory: the same options a session of this profile gets.

    It denies every tool and collects the CLI's messages for one turn.
    """

    def __init__(self, profile: Profile) -> None:
        self.id = "check_" + secrets.token_hex(6)
        self.spec = narrow(profile, Open(id=self.id, profile=profile.name))
        self.model = self.spec.model
        self.permission_mode: str = self.spec.permission_mode
        self.fork_of = None  # as for a session that is no fork: the runner resumes nothing
        self._messages: asyncio.Queue[Any] = asyncio.Queue()

    def on_message(self, message: Any) -> None:
        self._messages.put_nowait(message)

    def on_exit(self, runner: AgentRunner, error: BaseException | None) -> None:
        self._messages.put_nowait(error or EOFError("the CLI exited"))

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult:
        return PermissionResultDeny(message="This is a profile check; no tools run.")

    async def run(self, make_runner: Callable[[], AgentRunner]) -> ProfileCheck:
        started = time.monotonic()
        check = ProfileCheck(profile=self.spec.profile.name, ok=False, duration_ms=0)
        runner = make_runner()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await runner.start()
                await runner.query({"type": "user", "message": {"role": "user", "content": PROBE_PROMPT}, "parent_tool_use_id": None})
                await self._read_turn(check)
        except TimeoutError:
            check.errors.append(f"no result within {PROBE_TIMEOUT_S:.0f} s")
        except Exception as exc:
            check.errors.append(f"the CLI failed: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await runner.stop()
        self._warn_unknown_tools(check)
        check.ok = not check.errors
        check.duration_ms = int((time.monotonic() - started) * 1000)
        return check

    async def _read_turn(self, check: ProfileCheck) -> None:
        while True:
            message = await self._messages.get()
            if isinstance(message, BaseException):
                raise message
            if isinstance(message, SystemMessage) and message.subtype == "init":
                data = message.data
                check.cli_version = data.get("claude_code_version")
                check.model = data.get("model")
                check.tools = list(data.get("tools") or [])
                check.mcp_servers = [McpServer(name=s.get("name", "?"), status=s.get("status", "?")) for s in data.get("mcp_servers") or []]
                check.errors += [f"MCP server {s.name!r} is {s.status}" for s in check.mcp_servers if s.status != "connected"]
            elif isinstance(message, AssistantMessage) and message.error:
                check.errors.append(f"the model call failed: {message.error}")
            elif isinstance(message, ResultMessage):
                if message.is_error and not check.errors:
                    check.errors.append(f"the turn failed: {message.subtype} {message.result or ''}".strip())
                return

    def _warn_unknown_tools(self, check: ProfileCheck) -> None:
        if not check.tools:
            return
        for kind, names in (("allowed", self.spec.allowed_tools), ("disallowed", self.spec.disallowed_tools)):
            for entry in names:
                tool = entry.split("(", 1)[0]
                if tool not in check.tools and not tool.startswith("mcp__"):
                    check.warnings.append(f"{kind} tool {entry!r} is not in the CLI's tool list (a typo, or a tool it loads on demand)")
