"""Admission control: a CLI starts only with a slot and the memory for it; idle CLIs hibernate.

Invariant: the sessions holding a CLI slot (`Session.holds_cli`: a CLI running, starting or
promised to a frame already accepted) never exceed `max_live_clis`, and none is granted while the
node's available memory is below `memory_reserve_mb` + `cli_memory_mb`. At a limit the longest-idle
session that may hibernate gives its slot up; when none may, the caller is refused at once with
`at_capacity` and a retry hint — nothing queues for a slot. Starts that were granted a slot take
turns through `starts` (at most `max_starting_clis` at once), a wait bounded by the slots.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from gateway.config import Settings
from gateway.wire.errors import ErrorCode, GatewayError

log = logging.getLogger("gateway.capacity")

MiB = 1024 * 1024
RETRY_MIN_MS, RETRY_MAX_MS = 1000, 60_000
MEMORY_RETRY_MS = 5000  # memory comes back when something ends, which no clock here predicts


class Tenant(Protocol):
    """What admission reads and does to a session."""

    id: str

    @property
    def holds_cli(self) -> bool: ...

    @property
    def can_hibernate(self) -> bool: ...

    @property
    def last_activity(self) -> int: ...

    def hibernate(self, reason: str) -> bool: ...


class Spare(Protocol):
    """CLIs started ahead of sessions (the warm pool): they count as live, and go first at a limit."""

    def __len__(self) -> int: ...

    def give_up_one(self) -> bool: ...


# ---- available memory ---------------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) and missing files alike


def _stat(path: Path, key: str) -> int:
    """The number after `key` in a `key value [unit]` file (/proc/meminfo, memory.stat); 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == key:
                return int(fields[1])
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_headroom(root: Path, proc_self_cgroup: Path) -> int | None:
    """Bytes this process's cgroup (or the tightest of its ancestors) may still use; None without a limit.

    Usage counts what the kernel can't simply drop: `memory.current` (v2) or `memory.usage_in_bytes`
    (v1) less the inactive file cache, as the kubelet's working set does.
    """
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    tightest: int | None = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2
            base, limit_file, usage_file, inactive = root, "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):  # cgroup v1
            base, limit_file, usage_file, inactive = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        group = base / path.lstrip("/")
        for level in (group, *group.parents):
            if level == base.parent:
                break
            limit = _read_int(level / limit_file)
            usage = _read_int(level / usage_file)
            if limit is None or usage is None or limit >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            headroom = limit - max(0, usage - _stat(level / "memory.stat", inactive))
            tightest = headroom if tightest is None else min(tightest, headroom)
    return tightest


def available_memory(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> int | None:
    """Bytes a new CLI can use: the node's MemAvailable, or the cgroup's headroom when that is lower.
    None where neither can be read (not Linux): then memory doesn't limit admission."""
    node = _stat(proc / "meminfo", "MemAvailable:") * 1024 or None
    headroom = _cgroup_headroom(root, proc / "self" / "cgroup")
    if node is None or headroom is None:
        return node if headroom is None else headroom
    return min(node, headroom)


# ---- admission ----------------------------------------------------------------------------------


class Capacity:
    """One process's CLI slots, start turns and memory reading; the session manager owns it."""

    def __init__(self, settings: Settings, sessions: Callable[[], Iterable[Tenant]], read_memory: Callable[[], int | None] = available_memory) -> None:
        self.settings = settings
        self._sessions = sessions
        self._read_memory = read_memory
        self.starts = asyncio.Semaphore(max(1, settings.max_starting_clis))
        self._available: int | None = None  # bytes, as last read (None: not read yet)
        self._granted_since_read = 0  # CLIs granted a slot since: their memory isn't in the reading yet
        self.refusals = {"clis": 0, "memory": 0}
        self.starting = 0  # sessions' CLI starts waiting for or in their turn
        self._creating = 0
        self.spare: Spare | None = None
        self.hibernations = 0

    @property
    def hibernation_on(self) -> bool:
        return self.settings.hibernate_after_s > 0

    def live(self) -> int:
        """CLIs counted against `max_live_clis`: sessions holding a slot, sessions being created, pooled CLIs."""
        return sum(1 for s in self._sessions() if s.holds_cli) + self._creating + (len(self.spare) if self.spare is not None else 0)

    @contextlib.contextmanager
    def creating(self, warm: bool) -> Iterator[None]:
        """A slot for a session being created (its creation may await a cluster's Redis): granted
        now, or `at_capacity`; counted here until the session, made, holds it. A session adopting a
        pooled CLI takes that CLI's slot."""
        if not warm:
            self.admit(None)
        self._creating += 1
        try:
            yield
        finally:
            self._creating -= 1

    def admit(self, session: Tenant | None) -> None:
        """Grant `session` a CLI slot now, hibernating the longest-idle sessions that may to make
        room, or raise `at_capacity`. Synchronous: the check and the grant are one step."""
        holders = [s for s in self._sessions() if s.holds_cli and s is not session]
        while True:
            short = self.short_of()
            if short is None:
                break
            if self.spare is not None and self.spare.give_up_one():
                self._granted_since_read -= 1
                continue
            victims = [s for s in holders if s.can_hibernate] if self.hibernation_on else []
            victim = min(victims, key=lambda s: s.last_activity, default=None)
            if victim is None or not victim.hibernate("capacity"):
                self.refusals[short] += 1
                raise self._refusal(short, holders)
            self.hibernations += 1
            self._granted_since_read -= 1  # its memory comes back as its CLI stops
            holders.remove(victim)
        self._granted_since_read += 1

    def short_of(self) -> str | None:
        """What a new CLI lacks now: "clis" (a slot), "memory", or None."""
        if self.live() >= self.settings.max_live_clis:
            return "clis"
        if self._available is not None:
            expected = self._available - max(0, self._granted_since_read) * self.settings.cli_memory_mb * MiB
            if expected < (self.settings.memory_reserve_mb + self.settings.cli_memory_mb) * MiB:
                return "memory"
        return None

    def _refusal(self, short: str, holders: list[Tenant]) -> GatewayError:
        if short == "memory":
            return GatewayError(ErrorCode.AT_CAPACITY, "this gateway is short of memory for another agent; try again later", MEMORY_RETRY_MS)
        retry_ms = RETRY_MAX_MS
        if self.hibernation_on and holders:
            # The soonest a session may hibernate by the clock (one busy now takes longer: at least this).
            soonest = min(s.last_activity for s in holders) + self.settings.hibernate_after_s * 1000
            retry_ms = int(soonest - time.time() * 1000)
        retry_ms = min(RETRY_MAX_MS, max(RETRY_MIN_MS, retry_ms))
        return GatewayError(ErrorCode.AT_CAPACITY, f"this gateway runs {self.settings.max_live_clis} agents, its limit; try again later", retry_ms)

    # ---- the background loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Read the available memory and hibernate idle sessions, every tick, until cancelled."""
        tick = max(0.05, min(self.settings.hibernate_after_s / 4 if self.hibernation_on else 1.0, 1.0))
        while True:
            await self.refresh()
            self.hibernate_idle()
            await asyncio.sleep(tick)

    async def refresh(self) -> None:
        """A fresh memory reading (file reads, off the loop); the CLIs counted since are in it."""
        granted = self._granted_since_read
        self._available = await asyncio.to_thread(self._read_memory)
        self._granted_since_read -= granted

    def hibernate_idle(self) -> None:
        if not self.hibernation_on:
            return
        cutoff = time.time() * 1000 - self.settings.hibernate_after_s * 1000
        for session in list(self._sessions()):
            if session.holds_cli and session.can_hibernate and session.last_activity <= cutoff and session.hibernate("idle"):
                self.hibernations += 1
