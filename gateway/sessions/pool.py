"""The warm pool: per profile, CLIs started ahead of `open`, each in the directories of a session to be.

Invariant: a pooled CLI runs exactly the profile's own options (`narrow(profile, Open())`), in its
own session directory and config directory, and answers no one (its tool requests are denied)
until a session adopts it. A session adopts one only when the options fixed at CLI start (tools,
disallowed tools, max_turns, max_budget_usd, prompts) are the profile's; the model and permission
mode a client narrowed to are then applied with the CLI's control requests before the session is
`idle`, and if one is refused the pooled CLI is stopped and a cold one started (`Session`), so a
session never runs wider than asked. Pooled CLIs count against `max_live_clis` and are the first
given up at a limit. Refills run one at a time, only while no session's CLI is starting and a
slot and the memory are free, at most one per `pool_refill_interval_s` and not within that time of
an `open` taking one: they never take CPU from a session's start, and rarely from its first turn.
"""

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from claude_agent_sdk.types import PermissionResultDeny, ToolPermissionContext

from gateway.config import Settings
from gateway.profiles import Profile, SessionSpec, narrow
from gateway.sessions.admission import Capacity
from gateway.sessions.runner import AgentRunner, PermissionResult, RunnerHooks
from gateway.wire.client import Open

log = logging.getLogger("gateway.pool")


# (session id, spec, hooks) -> a runner for that future session, not started.
PoolBuilder = Callable[[str, SessionSpec, RunnerHooks], AgentRunner]


@dataclass
class Warm:
    """A started CLI waiting for a session: the id that session will have, and what the CLI runs with."""

    session_id: str
    runner: AgentRunner
    runner_profile: str
    model: str | None
    permission_mode: str


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(16)


def served_by_pool(spec: SessionSpec, pooled: SessionSpec) -> bool:
    """Whether a session of `spec` may adopt a CLI started with `pooled`: the same start-only options
    (model and permission mode are applied at runtime)."""
    return (
        spec.profile is pooled.profile and spec.allowed_tools == pooled.allowed_tools and spec.disallowed_tools == pooled.disallowed_tools
        and spec.max_turns == pooled.max_turns and spec.max_budget_usd == pooled.max_budget_usd
    )


class _Unclaimed:
    """The hooks of a pooled CLI no session has taken: it says nothing until a query, and may ask nothing."""

    def __init__(self, pool: "WarmPool") -> None:
        self._pool = pool

    def on_message(self, message: Any) -> None:
        pass

    def on_exit(self, runner: AgentRunner, error: BaseException | None) -> None:
        self._pool.died(runner)

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult:
        return PermissionResultDeny(message="no session has taken this agent")


class WarmPool:
    """The pooled CLIs of one process, by profile; the session manager owns it and its refill task."""

    def __init__(
        self, settings: Settings, profiles: dict[str, Profile], build: PoolBuilder, capacity: Capacity,
        remove_files: Callable[[str], Any],
    ) -> None:
        self.settings = settings
        self._build = build
        self._capacity = capacity
        self._remove_files = remove_files  # (session id) -> awaitable: a discarded CLI's directories go
        self._specs = {name: narrow(profile, Open(id="pool")) for name, profile in profiles.items()}
        self._ready: dict[str, collections.deque[Warm]] = {name: collections.deque() for name in profiles}
        self._discarding: set[asyncio.Task[None]] = set()
        self.taken = 0
        self.missed = 0
        self._taken_at = 0.0  # loop time of the last take: a refill doesn't compete with that session's first turn

    def __len__(self) -> int:
        return sum(len(ready) for ready in self._ready.values())

    def ready(self, profile: str) -> int:
        return len(self._ready.get(profile, ()))

    def take(self, spec: SessionSpec) -> Warm | None:
        """A started CLI for a session of `spec`, or None (then the session starts its own)."""
        ready = self._ready.get(spec.profile.name)
        pooled = self._specs.get(spec.profile.name)
        if not ready or pooled is None or not served_by_pool(spec, pooled):
            self.missed += 1
            return None
        self.taken += 1
        self._taken_at = asyncio.get_running_loop().time()
        return ready.popleft()

    def put_back(self, warm: Warm) -> None:
        """A taken CLI whose session wasn't created after all (refused, or failed): ready again."""
        self._ready[warm.runner_profile].appendleft(warm)

    def give_up_one(self) -> bool:
        """Stop one pooled CLI to free its slot for a session (at a limit); False with none pooled."""
        ready = max(self._ready.values(), key=len, default=None)
        if not ready:
            return False
        self._discard(ready.pop())
        return True

    def died(self, runner: AgentRunner) -> None:
        for ready in self._ready.values():
            for warm in ready:
                if warm.runner is runner:
                    log.warning("a pooled CLI exited before a session took it")
                    ready.remove(warm)
                    self._discard(warm)
                    return

    def _discard(self, warm: Warm) -> None:
        task = asyncio.create_task(self._stop(warm), name=f"pool-discard-{warm.session_id}")
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _stop(self, warm: Warm) -> None:
        await warm.runner.stop()
        await self._remove_files(warm.session_id)

    # ---- refill ---------------------------------------------------------------------------

    def _wanted(self) -> str | None:
        """The profile whose pool is shortest of its size, if any is short."""
        size = self.settings.pool_size
        short = [(len(ready), name) for name, ready in self._ready.items() if len(ready) < size]
        return min(short)[1] if short else None

    async def run(self) -> None:
        """Refill the pools until cancelled, one CLI at a time."""
        loop = asyncio.get_running_loop()
        interval = self.settings.pool_refill_interval_s
        while True:
            await asyncio.sleep(interval)
            name = self._wanted()
            if name is None or self._capacity.starting or self._capacity.short_of() is not None or loop.time() - self._taken_at < interval:
                continue
            warm = await self._start(name)
            if warm is not None:
                self._ready[name].append(warm)

    async def _start(self, name: str) -> Warm | None:
        spec = self._specs[name]
        session_id = new_session_id()
        runner = self._build(session_id, spec, _Unclaimed(self))
        try:
            async with self._capacity.starts:
                await runner.start()
        except asyncio.CancelledError:  # shutdown: the runner stopped its CLI; its files go too
            await asyncio.shield(self._remove_files(session_id))
            raise
        except Exception as exc:
            log.warning("a pooled CLI for profile %s failed to start: %r", name, exc)
            await self._remove_files(session_id)
            return None
        return Warm(session_id, runner, name, spec.model, spec.permission_mode)

    async def close(self) -> None:
        """Stop every pooled CLI (shutdown); the refill task is cancelled first by the owner."""
        for ready in self._ready.values():
            while ready:
                self._discard(ready.pop())
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._discarding, return_exceptions=True)
