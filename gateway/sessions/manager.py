"""All sessions of this process: creation within limits, ownership, idle reaping, shutdown.

Transports reach sessions only through `open`, `get` and the `SessionHandle` calls. With Redis
(`redis_url`), the sessions are the cluster's: `get` gives the local `Session` while this replica
holds its lease, a `RemoteSession` forwarding to its owner otherwise; a new session is claimed and
registered before its CLI starts, and the per-principal limit counts every replica's sessions.

It also owns the process watchdog that ends this gateway's CLIs, and what they started, if the
gateway dies (see `proctree`).
"""

import asyncio
import collections
import contextlib
import itertools
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from claude_agent_sdk import project_key_for_directory
from redis.exceptions import RedisError

from gateway.cluster.node import ClusterNode
from gateway.cluster.ownership import Orphan
from gateway.cluster.remote import RemoteSession
from gateway.config import Settings
from gateway.events.log import EventLog, MemoryEventLog
from gateway.events.redis_log import RedisEventLog
from gateway.metrics import GatewayMetrics
from gateway.profiles import Profile, SessionSpec, narrow, opened_as
from gateway.sessions import proctree
from gateway.sessions.admission import Capacity
from gateway.sessions.agent_options import build_options, keep_sandbox_placeholders, launched_cli
from gateway.sessions.checks import ProfileProbe
from gateway.sessions.handle import SessionHandle
from gateway.sessions.pool import Warm, WarmPool, new_session_id
from gateway.sessions.runner import AgentRunner, RunnerHooks, SdkRunner
from gateway.sessions.session import BUSY_STATES, READY_STATES, ForkPoint, Session
from gateway.store.conversations import RedisSessionStore, SessionConversations
from gateway.wire.client import Open
from gateway.wire.codec import encode
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import RecoveryReason
from gateway.wire.http import ProfileCheck
from gateway.wire.server import SessionInfo, SessionLimits

log = logging.getLogger("gateway.sessions")

OPENED_WAIT_STEPS, OPENED_WAIT_STEP_S = 40, 0.05  # how long a re-sent `open` waits for the first one's session
RunnerFactory = Callable[[Session, str | None], AgentRunner]
SHUTDOWN_DRAIN_S = 5.0  # how long shutdown waits for attached clients to be sent their sessions' last events


TRANSCRIPT_MAX_EVENTS = 2000


def session_limits(settings: Settings) -> SessionLimits:
    """What a session's clients are told of its bounds (`SessionInfo.limits`), from the settings that set them."""
    return SessionLimits(
        log_max_events=settings.log_max_events,
        log_max_bytes=settings.log_max_bytes,
        log_max_age_s=settings.log_max_age_s,
        transcript_max_events=TRANSCRIPT_MAX_EVENTS,
        max_queued_queries=settings.max_queued_queries,
        max_frame_bytes=settings.max_frame_bytes,
    )


class SessionManager:
    def __init__(self, settings: Settings, profiles: dict[str, Profile], runner_factory: RunnerFactory | None = None) -> None:
        self.settings = settings
        self.profiles = profiles
        self._sessions_root = settings.sessions_dir.resolve()  # once, at startup: resolve() is file-system work
        self._runner_factory = runner_factory or self._sdk_runner
        self._sessions: dict[str, Session] = {}
        self._opened: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._reaper: asyncio.Task[None] | None = None
        self.shutting_down = False
        self._stopping: set[asyncio.Task[None]] = set()  # closes finishing after their callers were answered
        self._unrecorded: dict[str, Session] = {}  # closed here, not yet marked closed in Redis (the reaper retries)
        self._owner = proctree.new_owner()  # in every CLI's marker
        self._cli_serial = itertools.count(1)
        self._process_watchdog: asyncio.subprocess.Process | None = None
        launched_cli(settings.cli_path)  # looked up now, not on the event loop
        self.capacity = Capacity(settings, self._sessions.values)
        self._capacity_task: asyncio.Task[None] | None = None
        # Pooled CLIs are SDK CLIs: with another runner factory (tests' fakes) there is no pool.
        self.pool: WarmPool | None = None
        if runner_factory is None and settings.pool_size > 0:
            self.pool = WarmPool(settings, profiles, self._pooled_runner, self.capacity, self._remove_dir)
            self.capacity.spare = self.pool
        self._pool_task: asyncio.Task[None] | None = None
        self.metrics = GatewayMetrics(self._sessions.values, self.capacity)
        self.cluster = ClusterNode(settings, self) if settings.redis_url else None
        # With Redis, every CLI's transcript too, so a new CLI (any replica's) resumes from it.
        self._conversations = None if self.cluster is None else RedisSessionStore(
            self.cluster.redis, settings.redis_key_prefix, settings.conversation_ttl_s
        )

    # ---- lookup ----------------------------------------------------------------------------

    async def get(self, principal: str, session_id: str) -> SessionHandle:
        """The caller's session; another principal's is reported exactly like a missing one."""
        session: SessionHandle | None = self.owned(session_id)
        if session is None and self.cluster is not None:
            entry = await self.cluster.registry.lookup(session_id)
            session = None if entry is None else RemoteSession(entry, self.cluster)
        if session is None or session.principal != principal:
            raise GatewayError(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id}")
        return session

    def owned(self, session_id: str) -> Session | None:
        """A session this process runs: one it holds the lease of, or one it closed (still retained)."""
        session = self._sessions.get(session_id)
        if session is None or self.cluster is None or session.closed or self.cluster.ownership.holds(session_id):
            return session
        return None

    def list_for(self, principal: str) -> list[Session]:
        """The principal's sessions run by this process."""
        return [s for s in self._sessions.values() if s.principal == principal]

    async def list_infos(self, principal: str) -> list[SessionInfo]:
        """The principal's sessions (on every replica), closed ones included while retained."""
        if self.cluster is None:
            return [s.info() for s in self.list_for(principal)]
        infos = [entry.info for entry in await self.cluster.registry.list_for(principal)]
        return [s.info() if (s := self.owned(i.session_id)) is not None else i for i in infos]

    def live_count(self, principal: str | None = None) -> int:
        return sum(1 for s in self._sessions.values() if not s.closed and (principal is None or s.principal == principal))

    # ---- creation --------------------------------------------------------------------------

    async def open(self, principal: str, frame: Open) -> SessionHandle:
        """Create a session and start its CLI in the background. Re-sending the same `open` frame id
        returns the same session."""
        if self.shutting_down:
            raise GatewayError(ErrorCode.AGENT_UNAVAILABLE, "the gateway is shutting down; try again in a moment")
        existing = self._sessions.get(self._opened.get((principal, frame.id), ""))
        if existing is not None and not existing.closed:  # a closed one is gone: the open makes a new one
            return existing
        # A pooled CLI is taken first: the session is named by it (its directories are the CLI's).
        warm = self._take_warm(frame)
        session_id = warm.session_id if warm is not None else new_session_id()
        try:
            session = await self._open_named(principal, frame, session_id, warm)
        except BaseException:
            if warm is not None and self.pool is not None:
                self.pool.put_back(warm)  # nothing adopted it
            raise
        if warm is not None and self.pool is not None and session.id != warm.session_id:
            self.pool.put_back(warm)  # an earlier copy of this `open` made the session
        return session

    def _take_warm(self, frame: Open) -> Warm | None:
        """A pooled CLI that can serve the session `frame` asks for (None: it starts its own; options
        that are refused are refused by `_open`)."""
        profile = self.profiles.get(frame.profile)
        if self.pool is None or profile is None:
            return None
        try:
            spec = narrow(profile, frame)
        except GatewayError:
            return None
        return self.pool.take(spec)

    async def _open_named(self, principal: str, frame: Open, session_id: str, warm: Warm | None) -> SessionHandle:
        if self.cluster is None:
            return await self._open(principal, frame, session_id, warm)
        registry = self.cluster.registry
        earlier = await registry.reserve_open(principal, frame.id, session_id)
        if earlier is not None:
            found = await self._opened_elsewhere(principal, earlier)
            if found is not None and not found.closed:
                return found
            await registry.reserve_open(principal, frame.id, session_id, replace=True)
        try:
            return await self._open(principal, frame, session_id, warm)
        except BaseException:
            await registry.unreserve_open(principal, frame.id)
            raise

    async def _opened_elsewhere(self, principal: str, session_id: str) -> SessionHandle | None:
        """The session an earlier copy of an `open` made, on any replica: it is registered within
        moments of being named, so wait that long; None when it is gone."""
        for _ in range(OPENED_WAIT_STEPS):
            with contextlib.suppress(GatewayError):
                return await self.get(principal, session_id)
            await asyncio.sleep(OPENED_WAIT_STEP_S)
        return None

    async def _open(self, principal: str, frame: Open, session_id: str, warm: Warm | None) -> Session:
        profile = self.profiles.get(frame.profile)
        if profile is None:
            raise GatewayError(ErrorCode.PROFILE_NOT_FOUND, f"no profile {frame.profile!r}")
        spec = narrow(profile, frame)
        session = await self._new_session(principal, spec, session_id, frame, warm)
        session.start()
        self._opened[(principal, frame.id)] = session.id
        if len(self._opened) > 10_000:
            self._opened.popitem(last=False)
        log.info("session %s opened by %s (profile %s)", session.id, principal, profile.name, extra={"session_id": session.id})
        return session

    async def _new_session(self, principal: str, spec: SessionSpec, session_id: str, opened_by: Open, warm: Warm | None = None) -> Session:
        """A session (not started) within the limits, with a CLI slot (or its pooled CLI's); with
        Redis, claimed and registered with the `open` that narrowed it (an adopting replica narrows
        its profile again by it)."""
        if self.live_count() >= self.settings.max_sessions:
            raise GatewayError(ErrorCode.TOO_MANY_SESSIONS, "this gateway is at its session limit; try again later")
        live = self.live_count(principal) if self.cluster is None else await self.cluster.registry.live_count(principal)
        if live >= self.settings.max_sessions_per_principal:
            raise GatewayError(ErrorCode.TOO_MANY_SESSIONS, f"at most {self.settings.max_sessions_per_principal} sessions per principal")
        with self.capacity.creating(warm is not None):  # or `at_capacity`, before the session exists anywhere
            cluster = self.cluster
            if cluster is None:
                log_store = MemoryEventLog(self.settings.log_max_events, self.settings.log_max_bytes, self.settings.log_max_age_s)
                session = self._session(session_id, principal, spec, log_store, warm, cli_granted=True)  # the slot `creating` gave
            else:
                session = await self._claimed(cluster, principal, spec, session_id, opened_by, warm)
            self._sessions[session.id] = session
        return session

    async def _claimed(self, cluster: ClusterNode, principal: str, spec: SessionSpec, session_id: str, opened_by: Open, warm: Warm | None) -> Session:
        """A new session claimed and registered; should Redis fail (or the `open` be cancelled: its
        handshake timed out) after the claim, nothing of it stays: no lease renewed forever, no
        session listed `starting` forever."""
        fence = await cluster.ownership.claim(session_id)
        log_store: RedisEventLog | None = None
        session: Session | None = None
        try:
            log_store = await RedisEventLog.create(
                cluster.redis, cluster.keys(session_id), self.settings, fence=fence, on_fenced=lambda: self._fenced(session_id),
            )
            session = self._session(session_id, principal, spec, log_store, warm, cli_granted=True)
            await cluster.registry.register(principal, cluster.replica_id, session.info(), encode(opened_by))
            return session
        except BaseException:
            await asyncio.shield(self._unclaim(cluster, session_id, log_store, session))
            raise

    async def _unclaim(self, cluster: ClusterNode, session_id: str, log_store: RedisEventLog | None, session: Session | None) -> None:
        """Undo what `_claimed` made of a session so far, each step whatever became of the others."""
        with contextlib.suppress(RedisError, OSError):
            if session is not None:  # its registration may have been written before the error
                await cluster.registry.closed(msgspec.structs.replace(session.info(), state="closed"))
        with contextlib.suppress(RedisError, OSError):
            if log_store is not None:
                await log_store.close(ended=True)
        with contextlib.suppress(RedisError, OSError):
            await cluster.ownership.release(session_id)

    def _session(
        self, session_id: str, principal: str, spec: SessionSpec, log_store: EventLog, warm: Warm | None = None, cli_granted: bool = False,
    ) -> Session:
        """`cli_granted`: admission already gave it a CLI slot (`capacity.creating`)."""
        cluster = self.cluster
        return Session(
            session_id=session_id,
            principal=principal,
            spec=spec,
            log_store=log_store,
            runner_factory=self._runner_factory,
            on_closed=self._closed,
            on_described=None if cluster is None else self._described,
            ack_store=None if cluster is None else cluster.acks(session_id),
            lease=None if cluster is None else lambda: cluster.ownership.may_run(session_id),
            on_lease_lapsed=lambda: self.abandon(session_id),
            limits=session_limits(self.settings),
            turn_watchdog_s=self.settings.turn_watchdog_s,
            metrics=self.metrics.session(),
            forker=self.fork,
            capacity=self.capacity,
            warm=warm,
            cli_granted=cli_granted,
        )

    # ---- failover (with Redis) -------------------------------------------------------------

    async def adopt(self, orphan: Orphan, fence: int) -> None:
        """Run a session whose owner is gone: its log goes on (same epoch), what the lost owner left
        open is settled (`Session.recover`), and a new CLI resumes its conversation. A session this
        replica can't run (its profile unknown here, its record incomplete) is closed."""
        assert self.cluster is not None
        cluster, session_id = self.cluster, orphan.session_id
        found = await cluster.registry.adoption(session_id)
        profile = None if found is None else self.profiles.get(found.info.profile)
        log_store = await RedisEventLog.adopt(
            cluster.redis, cluster.keys(session_id), self.settings, fence=fence, on_fenced=lambda: self._fenced(session_id),
        )
        if found is None or profile is None:
            log.error("session %s: can't be adopted here (profile unknown or record incomplete); closing it", session_id)
            await log_store.close(ended=True)
            await cluster.ownership.release(session_id)
            return
        spec = narrow(profile, msgspec.json.decode(found.opened_by, type=Open))
        session = self._session(session_id, found.principal, spec, log_store)
        frames = await log_store.read_after(log_store.first_seq - 1) or []
        since = orphan.renewed_ms if found.handed_over_ms is None else found.handed_over_ms
        ownerless_ms = max(0, int(time.time() * 1000) - since)
        reason: RecoveryReason = "owner_lost" if found.handed_over_ms is None else "handover"
        session.recover(frames, found.info, found.conversation, reason, ownerless_ms)
        self._sessions[session_id] = session
        session.start(asleep=found.info.state == "hibernated")  # a sleeping session costs its adopter no CLI
        log.warning("session %s adopted (%s) after %d ms without an owner", session_id, reason, ownerless_ms)

    def abandon(self, session_id: str) -> None:
        """Another replica owns the session now: it stops here in the background, writing nothing."""
        session = self._sessions.pop(session_id, None)
        if self.cluster is not None:
            self.cluster.ownership.forget(session_id)
            self.cluster.registry.forget(session_id)
        if session is not None and not session.closed:
            log.error("session %s: adopted by another replica; its CLI here stops", session_id)
            task = asyncio.create_task(session.leave(), name=f"abandon-{session_id}")
            self._stopping.add(task)
            task.add_done_callback(self._stopped)

    async def restore(self, session_id: str, log_lost: bool) -> None:
        """Redis lost a session this replica runs (restarted empty) and the renewal claimed it again:
        register it again and, `log_lost`, write its log again from the tail (same epoch), so other
        replicas find it and their clients resume where they were."""
        session = self._sessions.get(session_id)
        if session is None or session.closed or self.cluster is None:
            return  # not registered yet (being opened), or closing: nothing to restore
        await self.cluster.registry.register(session.principal, self.cluster.replica_id, session.info(), encode(opened_as(session.spec)))
        self._described(session)
        if log_lost and isinstance(session.feed.log, RedisEventLog):
            session.feed.log.restore()

    async def fork(self, source: Session, query_id: str | None) -> Session:
        """A new session of `source`'s principal and settings continuing its conversation (from
        before `query_id`, or all of it): its CLI transcript is copied to the new session (in
        Redis when the conversations are kept there: a CLI resumed from Redis writes only there;
        else into its config directory), and its first CLI resumes it with `fork_session` (a cold
        start: no pooled CLI has that transcript)."""
        if self.shutting_down:
            raise GatewayError(ErrorCode.AGENT_UNAVAILABLE, "the gateway is shutting down; try again in a moment")
        if source.closed:
            raise GatewayError(ErrorCode.SESSION_CLOSED, "this session is closed")
        fork_of, transcript = source.fork_point(query_id)
        session = await self._new_session(source.principal, source.spec, new_session_id(), opened_as(source.spec))
        session.model, session.permission_mode = source.model, source.permission_mode
        try:
            if fork_of is not None:
                try:
                    if not await self._copy_stored(source, session, fork_of.claude_session_id):
                        await asyncio.to_thread(self._copy_transcript, source, session, fork_of.claude_session_id)
                except (OSError, RedisError) as exc:
                    log.warning("session %s: fork failed to copy the transcript: %r", source.id, exc)
                    raise GatewayError(ErrorCode.AGENT_ERROR, "the conversation could not be copied") from exc
        except BaseException:  # it was never started: it goes (lease, registry entry, files) rather than stay `starting`
            await asyncio.shield(session.close("the fork failed"))
            raise
        session.seed(fork_of, transcript)
        session.start()
        log.info("session %s forked from %s (before %s)", session.id, source.id, query_id or "now")
        return session

    async def _copy_stored(self, source: Session, target: Session, claude_session_id: str) -> bool:
        """Copy the conversation in Redis, where its CLIs keep it (not with file checkpoints: those
        stay on disk). False when it isn't there."""
        if self._conversations is None or source.spec.profile.enable_file_checkpointing:
            return False
        return await self._conversations.copy(claude_session_id, source.id, target.id)

    def _copy_transcript(self, source: Session, target: Session, claude_session_id: str) -> None:
        """The CLI finds a transcript under its config directory, by working directory: copy it there."""
        def project(session: Session) -> Path:
            root = self._session_dir(session.id)
            return root / "home" / ".claude" / "projects" / project_key_for_directory(root / "work")

        src, dst = project(source), project(target)
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f"{claude_session_id}.jsonl", dst / f"{claude_session_id}.jsonl")
        if (src / claude_session_id).is_dir():  # subagent transcripts
            shutil.copytree(src / claude_session_id, dst / claude_session_id, dirs_exist_ok=True)

    def _session_dir(self, session_id: str) -> Path:
        return self._sessions_root / session_id

    def _sdk_runner(self, session: Session, resume: str | None) -> AgentRunner:
        return self._build_runner(session.id, session.spec, session, resume, session.model, session.permission_mode, session.fork_of)

    def _pooled_runner(self, session_id: str, spec: SessionSpec, hooks: RunnerHooks) -> SdkRunner:
        return self._build_runner(session_id, spec, hooks, None, spec.model, spec.permission_mode)

    def _build_runner(
        self, session_id: str, spec: SessionSpec, hooks: RunnerHooks, resume: str | None, model: str | None, mode: str,
        fork_of: ForkPoint | None = None,
    ) -> SdkRunner:
        """A CLI for the session `session_id`, in its directories (resuming a fork's source with `fork_session`)."""
        root = self._session_dir(session_id)
        workdir, home = root / "work", root / "home"

        def prepare() -> None:
            workdir.mkdir(parents=True, exist_ok=True)
            (home / ".claude").mkdir(parents=True, exist_ok=True)
            for shared in (root.parent, root):  # shared by all sessions / by one session's parallel tool calls
                keep_sandbox_placeholders(shared)

        marker = f"{self._owner}/{next(self._cli_serial)}"
        conversations = None if self._conversations is None else SessionConversations(self._conversations, session_id)
        options = build_options(self.settings, spec, workdir, home, marker, resume, model, mode, conversations)
        if fork_of is not None and resume == fork_of.claude_session_id:
            options.fork_session, options.resume_session_at = True, fork_of.resume_at
        return SdkRunner(options, hooks, prepare)

    # ---- closing ---------------------------------------------------------------------------

    async def close(self, session: SessionHandle, reason: str) -> None:
        await session.close(reason)

    def _fenced(self, session_id: str) -> None:
        """Another replica claimed the session: its log writes nothing more, and it stops here."""
        self.abandon(session_id)

    def _described(self, session: Session) -> None:
        assert self.cluster is not None
        self.cluster.registry.changed(session.id, session.info, lambda: session.claude_session_id)

    async def _closed(self, session: Session) -> None:
        """A closed session's files go; in the cluster its description is final and its lease released.
        A session another replica runs by now (this one was fenced off, or lost or let go the lease
        before the close) is that replica's: only its files here go, not its description, lease or
        conversations in Redis."""
        if self.cluster is not None:
            ours = self.cluster.ownership.holds(session.id) and await self._record_closed(self.cluster, session)
            with contextlib.suppress(RedisError, OSError):  # else the lease runs out: nothing renews it now
                await self.cluster.ownership.release(session.id)
            if not ours:
                log.warning("session %s: closed here after another replica took it over; left to that one", session.id)
                await self._remove_dir(session.id)
                return
        await self._remove_files(session)

    async def _record_closed(self, cluster: ClusterNode, session: Session) -> bool:
        """Mark the session closed in the registry; False when another replica owns it. On a Redis
        error the reaper's next pass tries again (else it stayed listed, and counted, as live)."""
        try:
            ours = await cluster.registry.closed(session.info())
        except (RedisError, OSError) as exc:
            log.warning("session %s: could not be marked closed in Redis (retrying): %r", session.id, exc)
            self._unrecorded[session.id] = session
            return True
        self._unrecorded.pop(session.id, None)
        return ours

    async def _remove_files(self, session: Session) -> None:
        """A closed session's working and config directories go with it, and so do its conversations
        in Redis (else they expire after `conversation_ttl_s`)."""
        if self._conversations is not None:
            try:
                await self._conversations.delete_project(session.id)
            except RedisError as exc:
                log.warning("session %s: its conversations stay in Redis until they expire: %s", session.id, exc)
        await self._remove_dir(session.id)

    async def _remove_dir(self, session_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._session_dir(session_id), True)

    async def start(self) -> None:
        """End what gateways that are gone left running under the sessions directory, start the
        process watchdog that ends this one's CLIs should it die, join the cluster (with Redis), and
        start the idle reaper."""
        left = await asyncio.to_thread(proctree.end, proctree.left_behind(str(self._sessions_root)))
        if left:
            log.warning("ended %d process(es) left running by a gateway that is gone", len(left))
        # Its stdin is a pipe only this process holds (close-on-exec): it ends when this process does.
        self._process_watchdog = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", proctree.__file__, self._owner, stdin=asyncio.subprocess.PIPE, start_new_session=True,
        )
        if self.cluster is not None:
            await self.cluster.start()
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")
        self._capacity_task = asyncio.create_task(self.capacity.run(), name="session-capacity")
        if self.pool is not None:
            self._pool_task = asyncio.create_task(self.pool.run(), name="warm-pool")

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.settings.idle_timeout_s / 4, 30.0))
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except (RedisError, OSError) as exc:  # Redis away: the next pass tries again
                if not failing:
                    log.warning("reaping idle sessions failed while Redis is unreachable (retrying): %r", exc)
                failing = True
                continue
            except Exception:  # a bug in one pass must not end the reaper
                log.exception("reaping sessions failed")
            failing = False

    async def reap(self) -> None:
        """Close sessions quiet with no client past the timeout; forget closed ones past retention;
        apply the logs' age retention (in memory it is otherwise applied only by an append).

        A busy session (a turn running, an approval pending, a CLI starting) gets the turn watchdog's
        time on top: whatever it waits on, its CLI never runs forever with nobody there.
        """
        if self.cluster is not None:
            for unrecorded in list(self._unrecorded.values()):
                await self._record_closed(self.cluster, unrecorded)
        now = time.time() * 1000
        for session in list(self._sessions.values()):
            if self._sessions.get(session.id) is not session:  # another replica took it over during this pass
                continue
            if isinstance(session.feed.log, MemoryEventLog):
                session.feed.log.expire(int(now))
            quiet_ms = now - session.last_activity
            if session.closed:
                if quiet_ms > self.settings.closed_retention_s * 1000:
                    if self._sessions.pop(session.id, None) is not None:
                        self.metrics.forget(session)
                continue
            timeout_s = self.settings.idle_timeout_s
            if session.state not in READY_STATES:
                timeout_s += self.settings.turn_watchdog_s
            if session.connections == 0 and quiet_ms > timeout_s * 1000:
                if self.cluster is not None and await self.cluster.watched(session.id):
                    continue  # its clients are attached through other replicas
                log.info("session %s (%s) reaped after %.0f s quiet", session.id, session.state, quiet_ms / 1000, extra={"session_id": session.id})
                await self.close(session, "idle_timeout")

    async def _drain(self, cluster: ClusterNode) -> list[Session]:
        """Hand every session this replica runs over to the others (SIGTERM with Redis): no new turn
        starts here, running turns get up to `drain_grace_s` to end, then each session stops here
        (its CLI stopped, its log flushed, its clients here closed 1012 to resume elsewhere) and a
        live replica adopts it at once, queued queries and all. Returns the sessions handed over."""
        await cluster.adopter.stop()
        with contextlib.suppress(RedisError, OSError):
            await cluster.ownership.leave()
        sessions = [s for s in self._sessions.values() if not s.closed]
        for session in sessions:
            session.hold()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.drain_grace_s):
                while any(s.state in BUSY_STATES for s in sessions):
                    await asyncio.sleep(0.05)
        await asyncio.gather(*(self._hand_over(cluster, s) for s in sessions), return_exceptions=True)
        return sessions

    async def _hand_over(self, cluster: ClusterNode, session: Session) -> None:
        self._sessions.pop(session.id, None)
        await session.leave()
        try:
            await cluster.hand_over(session.id)
        except (RedisError, OSError) as exc:  # its lease runs out and a survivor adopts it then
            log.error("session %s: handover failed: %r", session.id, exc)
        log.info("session %s handed over", session.id)

    async def shutdown(self) -> None:
        """Close every session (SIGTERM path) with reason `shutdown` and stop every CLI; with Redis,
        hand them over to the other replicas first (`_drain`).

        Runs before the transports close their connections: each session's last events (every
        query's `result`, then `closed`) are emitted at once and its attached clients are sent them
        (for up to SHUTDOWN_DRAIN_S; they detach when their outbox has drained) while the CLIs stop.
        """
        self.shutting_down = True
        background = [task for task in (self._reaper, self._capacity_task, self._pool_task) if task is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)  # one that failed doesn't stop the drain
        handed_over = [] if self.cluster is None else await self._drain(self.cluster)
        # Closed ones too: a close a client started may still be stopping its CLI; this waits for it.
        closing = asyncio.gather(*(self.close(s, "shutdown") for s in self._sessions.values()), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_DRAIN_S):
                while any(s.connections for s in [*self._sessions.values(), *handed_over]):
                    await asyncio.sleep(0.02)
        await closing
        await asyncio.gather(*self._stopping, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
        if self.cluster is not None:
            await self.cluster.stop()
        if self._process_watchdog is not None:
            assert self._process_watchdog.stdin is not None
            self._process_watchdog.stdin.close()  # nothing of ours is left running: it finds nothing to end
            await self._process_watchdog.wait()

    # ---- operator and bulk operations ------------------------------------------------------

    async def close_idle(self, principal: str, idle_for_s: float) -> list[str]:
        """Close the principal's sessions with no activity for `idle_for_s`, unless a turn is running.

        Returns once they are closed (state `closed`, out of the session limits), which takes a loop
        turn or two; their CLIs stop in the background. A close waits for a CLI still starting, and
        ten starting at once take seconds: the caller doesn't wait for that.
        """
        cutoff = time.time() * 1000 - idle_for_s * 1000
        idle = [
            i.session_id for i in await self.list_infos(principal)
            if i.state not in ("closed", "running", "interrupted") and i.last_activity <= cutoff
        ]
        sessions = [await self.get(principal, session_id) for session_id in idle]
        closes = [self._close_in_background(s, "closed_idle") for s in sessions]
        forwarded = [task for s, task in zip(sessions, closes) if isinstance(s, RemoteSession)]
        if forwarded:  # closed once its owner answers (which may take an adoption's time)
            await asyncio.wait(forwarded)
        while any(not s.closed and not task.done() for s, task in zip(sessions, closes)):
            await asyncio.sleep(0)  # a local close marks its session closed in its first step
        return idle

    def _close_in_background(self, session: SessionHandle, reason: str) -> "asyncio.Task[None]":
        task = asyncio.create_task(self.close(session, reason), name=f"close-{session.id}")
        self._stopping.add(task)
        task.add_done_callback(self._stopped)
        return task

    def _stopped(self, task: "asyncio.Task[None]") -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing a session failed", exc_info=task.exception())

    async def check_profile(self, name: str) -> ProfileCheck:
        """Dry-run a profile: start a CLI exactly as a session of it would, run one tiny turn, report.

        Refused like a new session when the gateway is at its session limit.
        """
        profile = self.profiles.get(name)
        if profile is None:
            raise GatewayError(ErrorCode.PROFILE_NOT_FOUND, f"no profile {name!r}")
        if self.live_count() >= self.settings.max_sessions:
            raise GatewayError(ErrorCode.TOO_MANY_SESSIONS, "this gateway is at its session limit; try again later")
        probe = ProfileProbe(profile)
        try:
            return await probe.run(lambda: self._runner_factory(probe, None))  # type: ignore[arg-type]
        finally:
            await self._remove_files(probe)  # type: ignore[arg-type]
