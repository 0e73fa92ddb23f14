"""A session's running agent: one ClaudeSDKClient, its CLI process and the single task that reads it.

Messages reach the session in the CLI's order: stream events straight from the transport, in the
pipe's callback or the SDK's reading task, the rest through the SDK's query layer and this runner's
task (see `transport`).

Kept apart from `Session` so a session can outlive its CLI: restart after a crash, resume with `resume=`.
However the CLI ends, nothing it started outlives the runner (see `proctree`).
"""

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, StreamEvent
from claude_agent_sdk.types import PermissionResultAllow, PermissionResultDeny, ToolPermissionContext

from gateway.sessions import proctree
from gateway.sessions.transport import chunked_transport

log = logging.getLogger("gateway.runner")

PermissionResult = PermissionResultAllow | PermissionResultDeny


class RunnerHooks(Protocol):
    """What a runner calls back into; `on_message` runs in the loop's callbacks (the CLI pipe's) or on a
    reading task (the runner's or the SDK's), so it must not block, await, or need a current task."""

    def on_message(self, message: Any) -> None: ...

    def on_exit(self, runner: "AgentRunner", error: BaseException | None) -> None: ...

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult: ...


class AgentRunner(Protocol):
    claude_session_id: str | None

    @property
    def alive(self) -> bool:
        """Connected and reading; False from the moment the CLI is found dead (before `on_exit`)."""
        ...

    async def start(self) -> None: ...

    async def query(self, message: dict[str, Any]) -> None: ...

    async def interrupt(self) -> None: ...

    async def set_model(self, model: str | None) -> None: ...

    async def set_permission_mode(self, mode: str) -> None: ...

    async def get_context_usage(self) -> dict[str, Any]: ...

    async def stop_task(self, task_id: str) -> None: ...

    async def rewind_files(self, user_message_id: str) -> None: ...

    async def get_mcp_status(self) -> dict[str, Any]: ...

    async def reconnect_mcp_server(self, name: str) -> None: ...

    async def toggle_mcp_server(self, name: str, enabled: bool) -> None: ...

    def adopt(self, hooks: RunnerHooks) -> None:
        """Report to `hooks` from now on."""
        ...

    async def stop(self) -> None: ...


RunnerFactory = Callable[[RunnerHooks, str | None], AgentRunner]
"""Builds a runner for a session: (hooks, resume id or None)."""


class SdkRunner:
    """Owns one ClaudeSDKClient inside one task, as the SDK requires (its task group is bound to it)."""

    def __init__(self, options: ClaudeAgentOptions, hooks: RunnerHooks, prepare: Callable[[], None] | None = None) -> None:
        self.claude_session_id: str | None = options.resume
        self._hooks = hooks
        self._prepare = prepare  # file-system setup (the session's directories): run in a thread, off the loop
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._options = options
        self._options.can_use_tool = self._can_use_tool  # through `_hooks`, which `adopt` may change
        self._options.stderr = self._stderr.append
        self._client: ClaudeSDKClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()  # set when stop() begins: control requests give up then

    async def start(self) -> None:
        """Start the CLI. Cancelled midway (the session closed while its CLI started), it stops what
        it started before the cancellation goes on, so no CLI or file outlives the session."""
        prepared: asyncio.Future[None] | None = None
        try:
            if self._prepare is not None:
                prepared = asyncio.ensure_future(asyncio.to_thread(self._prepare))
                await asyncio.shield(prepared)
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(ready), name="sdk-runner")
            await ready
        except asyncio.CancelledError:
            if prepared is not None:
                with contextlib.suppress(Exception):
                    await prepared  # a thread can't be cancelled: let it finish before the files are removed
            await self.stop()
            raise

    async def _run(self, ready: asyncio.Future[None]) -> None:
        transport = chunked_transport(self._options, self._on_message)  # stream events mostly come by `_on_message`
        client = ClaudeSDKClient(self._options, transport=transport)
        error: BaseException | None = None
        try:
            await client.connect()
            self._client = client
            ready.set_result(None)
            async for message in client.receive_messages():
                if message.__class__ is StreamEvent:
                    if transport is not None:
                        transport.delivered(message.uuid)
                elif isinstance(message, ResultMessage):
                    self.claude_session_id = message.session_id
                self._hooks.on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the CLI died or the SDK failed: the session decides what next
            error = exc
            if not ready.done():
                ready.set_exception(exc)
        finally:
            self._client = None
            with contextlib.suppress(Exception):
                await client.disconnect()  # in this task: the SDK's task group lives here
            await self._end_leftovers()
        if error is not None and self._stderr:
            log.warning("CLI stderr (last lines): %s", " | ".join(self._stderr))
        if not self._stopping:
            self._hooks.on_exit(self, error)

    def _on_message(self, message: Any) -> None:
        self._hooks.on_message(message)  # through `_hooks`, which `adopt` may change

    @property
    def alive(self) -> bool:
        return self._client is not None

    def adopt(self, hooks: RunnerHooks) -> None:
        """Report to `hooks` from now on: a pooled CLI taken by a session."""
        self._hooks = hooks

    async def _can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult:
        return await self._hooks.can_use_tool(tool_name, tool_input, ctx)

    async def _end_leftovers(self) -> None:
        """End what the CLI started and left running (its socat, a start-up `npm root`): they carry
        its marker. Before `stop` returns, so before the session's files are removed."""
        marker = (self._options.env or {}).get(proctree.MARKER)
        if marker is not None:
            ended = await asyncio.to_thread(proctree.end, proctree.of_cli(marker))
            if ended:
                log.info("ended %d process(es) the CLI left behind", len(ended))

    def _require(self) -> ClaudeSDKClient:
        if self._client is None:
            raise ConnectionError("agent is not running")
        return self._client

    async def query(self, message: dict[str, Any]) -> None:
        await self._require().query(_one(message))

    async def interrupt(self) -> None:
        await self._control(self._require().interrupt())

    async def set_model(self, model: str | None) -> None:
        await self._control(self._require().set_model(model))

    async def set_permission_mode(self, mode: str) -> None:
        await self._control(self._require().set_permission_mode(mode))  # type: ignore[arg-type]

    async def _control(self, request: Coroutine[Any, Any, None]) -> None:
        """A control request that fails as soon as this CLI is being stopped. The SDK fails pending
        requests when its CLI dies, but its disconnect leaves them to time out: a frame waiting on a
        CLI that a reset or close replaces would hold its connection for the whole control timeout."""
        answer = asyncio.ensure_future(request)
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait((answer, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not answer.done():
                raise ConnectionError("the agent was stopped before it answered")
            answer.result()
        finally:
            for waiting in (answer, stopped):
                waiting.cancel()

    async def get_context_usage(self) -> dict[str, Any]:
        return dict(await self._require().get_context_usage())

    async def stop_task(self, task_id: str) -> None:
        await self._require().stop_task(task_id)

    async def rewind_files(self, user_message_id: str) -> None:
        await self._require().rewind_files(user_message_id)

    async def get_mcp_status(self) -> dict[str, Any]:
        return dict(await self._require().get_mcp_status())

    async def reconnect_mcp_server(self, name: str) -> None:
        await self._require().reconnect_mcp_server(name)

    async def toggle_mcp_server(self, name: str, enabled: bool) -> None:
        await self._require().toggle_mcp_server(name, enabled)

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def _one(message: dict[str, Any]):  # type: ignore[no-untyped-def]
    yield message
