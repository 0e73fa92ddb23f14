"""One agent conversation: its state machine, query queue, approvals and event feed.

Transports call `execute` and `attach`; the runner calls `on_message`, `on_exit` and `can_use_tool`.
The session outlives its runner: a crashed CLI is replaced with one resuming the same conversation.
"""

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from claude_agent_sdk import (
    AssistantMessage,
    CLIJSONDecodeError,
    ConversationResetMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    UserMessage,
)
from claude_agent_sdk.types import TERMINAL_TASK_STATUSES, PermissionResultDeny, ToolPermissionContext

from gateway import PROTOCOL_VERSION, logs
from gateway.events.feed import EventFeed, Pending, Sink
from gateway.events.log import EventLog
from gateway.metrics import GatewayMetrics, SessionMetrics
from gateway.profiles import SessionSpec
from gateway.sessions.admission import Capacity
from gateway.sessions.pool import Warm
from gateway.sessions.approvals import Approvals, PermissionResult
from gateway.sessions.runner import AgentRunner
from gateway.sessions.translate import stream_event, to_event
from gateway.wire import client as cf
from gateway.wire import events as ev
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.server import (
    Ack,
    Attached,
    ContextUsage,
    EventFrame,
    McpServerStatus,
    Reset,
    ResetReason,
    SessionInfo,
    SessionLimits,
    Snapshot,
    TaskInfo,
)

log = logging.getLogger("gateway.session")

CONTROL_TIMEOUT_S = 15.0
NO_CONVERSATION = "No conversation found"  # the CLI's refusal to resume a conversation it never saved
GUARD_TICK_S = 1.0  # how often a running turn's guard looks at it
ACKS_KEPT = 1000  # frame ids whose ack a re-sent copy gets back (beyond the Redis ack records)
CLOSE_REPLY_WAIT_S = 1.0  # how long a closing session waits for its `close` frame's ack to be queued
TRANSCRIPT_KINDS = (
    ev.UserQuery, ev.AssistantMessage, ev.UserMessage, ev.TurnResult, ev.PermissionRequest, ev.Question,
    ev.RequestResolved, ev.ModelChanged, ev.PermissionModeChanged, ev.ConversationReset, ev.AgentError, ev.FilesRewound,
    ev.AgentRecovered,
)
BUSY_STATES = ("running", "awaiting_approval", "interrupted")
READY_STATES = ("idle", "failed", "hibernated")  # a query starts at once (a hibernated session's wakes its CLI first)
# Sent without `client_composed`, so the CLI runs it as its own command (the only such message).
# Events that change what `info()` says other than the position: the registry is told of these only.
DESCRIBED_KINDS = (
    ev.StateChanged, ev.ModelChanged, ev.PermissionModeChanged, ev.PermissionRequest, ev.Question,
    ev.RequestResolved, ev.TurnResult, ev.UserQuery,
)
CLEAR_MESSAGE = {"type": "user", "message": {"role": "user", "content": "/clear"}, "parent_tool_use_id": None}  # failed: the CLI couldn't start; the next query tries again


class _Retired:
    """The hooks of a CLI its session stopped or replaced: what it still says (a late `result` of
    an abandoned turn, say) reaches no session, and it may ask nothing."""

    def on_message(self, message: Any) -> None:
        pass

    def on_exit(self, runner: AgentRunner, error: BaseException | None) -> None:
        pass

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult:
        return PermissionResultDeny(message="this agent was stopped")


RETIRED = _Retired()


def _moved() -> GatewayError:
    """A frame refused because the session left this replica: the client sends it again, to the next owner."""
    return GatewayError(ErrorCode.OWNER_UNREACHABLE, "this session moved to another replica; send the frame again")


def _settle(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


class ForkPoint(msgspec.Struct, frozen=True):
    """Where a forked session's first CLI resumes: the source's CLI session, up to a message."""

    claude_session_id: str
    resume_at: str | None  # None: the whole conversation
    # What the fork inherits so it can be forked again before any query of its transcript: the
    # last message it starts after, and the fork points of the queries it was forked with.
    last_uuid: str | None = None
    fork_points: dict[str, str | None] = {}


_decode_event = msgspec.json.Decoder(EventFrame).decode


def _query_message(prompt: str | list[Any], composed: bool = True) -> dict[str, Any]:
    """What the CLI is sent for a query: a client's is `composed` (verbatim: no slash commands or
    @file expansion); only a profile-listed command the gateway runs is not."""
    message: dict[str, Any] = {
        "type": "user",
        "message": {"role": "user", "content": prompt},
        "parent_tool_use_id": None,
        "uuid": str(uuid.uuid4()),
    }
    if composed:
        message["client_composed"] = True
    return message


def now_ms() -> int:
    return int(time.time() * 1000)


def reset_reason(epoch: str | None, after: int, info: SessionInfo) -> ResetReason:
    """Why a client resuming from (`epoch`, `after`) gets a snapshot of the session described by `info`."""
    if epoch not in (None, info.epoch):
        return "epoch_mismatch"
    return "cursor_ahead" if after > info.last_seq else "cursor_too_old"


class AckStore(Protocol):
    """Acks kept beyond this process (Redis), so a frame id re-sent to another replica runs once."""

    async def get(self, frame_id: str) -> Ack | None: ...

    def put(self, ack: Ack) -> None:
        """Sync: nothing may come between a frame's execution and its ack (a close ends the feed)."""
        ...


class Session:
    def __init__(
        self,
        *,
        session_id: str,
        principal: str,
        spec: SessionSpec,
        log_store: EventLog,
        runner_factory: Callable[["Session", str | None], AgentRunner],
        on_closed: Callable[["Session"], Awaitable[None]] | None = None,
        on_described: Callable[["Session"], None] | None = None,
        ack_store: AckStore | None = None,
        lease: Callable[[], bool] | None = None,
        on_lease_lapsed: Callable[[], None] | None = None,
        limits: SessionLimits,
        turn_watchdog_s: float = 900.0,
        metrics: SessionMetrics | None = None,
        forker: Callable[["Session", str | None], Awaitable["Session"]] | None = None,
        capacity: Capacity | None = None,
        warm: Warm | None = None,
        cli_granted: bool = False,
    ) -> None:
        self.id = session_id
        self.principal = principal
        self.spec = spec
        self.model = spec.model
        self.permission_mode: str = spec.permission_mode
        self.state: ev.SessionState = "starting"
        self.feed = EventFeed(log_store)
        self.approvals = Approvals(self.emit, self._sync_state, spec.profile, self._mode_applied)
        self.created_at = self._touched = now_ms()
        self.turns = 0
        self.claude_session_id: str | None = None
        self.rate_limit: ev.RateLimitInfo | None = None
        self._tasks: dict[str, TaskInfo] = {}  # background tasks of the running CLI, by id
        # query id -> the uuid its message was sent with: the CLI's name for it (rewind_files)
        self._query_uuids: collections.OrderedDict[str, str] = collections.OrderedDict()
        # query id -> the CLI's uuid of the last message before it ran (None: it began the
        # conversation): where a fork that leaves the query out resumes (`resume_session_at`)
        self._fork_points: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._last_uuid: str | None = None  # the conversation's latest main-chain message
        self._forker = forker
        self.fork_of: ForkPoint | None = None  # set on a fork until its CLI started from it
        self.connections = 0
        self._runner_factory = runner_factory
        self._runner: AgentRunner | None = None
        # Starting, replacing and stopping the CLI take turns: a reset or close sent while a CLI
        # starts waits for that start instead of racing it (two CLIs, or one outliving the session).
        self._runner_lock = asyncio.Lock()
        self.limits = limits
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._current_query: str | None = None
        self._transcript: collections.deque[ev.EventBody] = collections.deque(maxlen=limits.transcript_max_events)
        self._streaming: list[str] = []
        self._thinking: list[str] = []  # the thinking streamed so far of a block not yet final
        self._acks: collections.OrderedDict[str, asyncio.Future[Ack]] = collections.OrderedDict()
        self._cost_before_runner = 0.0
        self._cost_of_runner = 0.0
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        # Set once the ack of the `close` frame that closes the session is handed to its caller: the
        # feed ends (and with it the caller's stream) only after, so that ack is never cut off.
        self._close_replied: asyncio.Future[None] | None = None
        self._turn_done = asyncio.Event()
        self._clearing: asyncio.Future[None] | None = None
        self._current_uuid: str | None = None  # the running query's message uuid, as the CLI echoes it
        # One reset at a time; while one runs, queued queries wait for it (also in the moment between
        # the interrupted turn's end and the reset's `/clear`).
        self._reset_lock = asyncio.Lock()
        self._sealed = False  # `closed` was the last event: whatever finishes after it stays quiet
        self._lapsed = False  # sealed because its lease lapsed: the session goes on at another replica
        self._holding = False  # draining: no new turn starts here
        self._on_closed = on_closed
        self._on_described = on_described  # sync, O(1): told when `info()` changes beyond the position
        self._ack_store = ack_store
        # With Redis: whether this replica may still run the session (`Ownership.may_run`); an event
        # emitted past it is neither delivered nor logged, and the session leaves (`on_lease_lapsed`).
        self._lease = lease
        self._on_lease_lapsed = on_lease_lapsed
        self._turn_watchdog_s = turn_watchdog_s
        self._heard = 0  # messages from the CLI so far: a turn's guard watches it move
        self._interrupted_at = 0.0  # loop time of the running turn's interrupt
        self._guard: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()  # stuck CLIs being stopped; close waits for them
        self.metrics = metrics or GatewayMetrics().session()
        self._capacity = capacity
        self._warm = warm  # a pooled CLI to adopt instead of starting the first one
        self._cli_granted = cli_granted or warm is not None  # a CLI slot promised (by `open`, or a query to a session without a CLI) and not yet used
        self._asleep: asyncio.Task[None] | None = None  # the CLI that hibernation stopped, while it stops

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, asleep: bool = False) -> None:
        """Start the session's pump, which starts the first CLI: `open` answers at once, and
        queries sent while the CLI starts (about 0.5 s) queue behind it. `asleep`: a session adopted
        while hibernated stays so, with no CLI until something needs one (as if it woke here)."""
        if asleep:
            self._set_state("hibernated", "adopted")
        else:
            self.emit(ev.StateChanged(state="starting"))
        # Its tasks (and the CLI's reader) log as the session's, not as the connection's that opened it.
        pump = self._pump(start_cli=not asleep)
        self._pump_task = asyncio.create_task(pump, name=f"session-pump-{self.id}", context=logs.session_context(self.id, self.principal))

    async def close(self, reason: str) -> None:
        """Close the session. A later caller (shutdown, while a tab's close still stops the CLI)
        waits for the first close to finish; a cancelled caller doesn't cut it short."""
        await asyncio.shield(self._begin_close(reason))

    def _begin_close(self, reason: str) -> "asyncio.Task[None]":
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(reason), name=f"session-close-{self.id}")
        return self._closing

    async def _close(self, reason: str) -> None:
        # Requests are settled before the results, and `closed` is the only state after them.
        self.approvals.cancel_all()
        self._drop_current("the session was closed")
        self._drop_queued("the session was closed")
        self._set_state("closed", reason)
        self._stop_waiting("the session was closed")
        for task in (self._pump_task, self._guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._runner_lock:  # a reset's CLI start still in flight finishes, then stops here
            await self._stop_runner()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.feed.log.close(ended=True)  # first: a log that commits later gives its clients the last events
        if self._close_replied is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_REPLY_WAIT_S):
                    await asyncio.shield(self._close_replied)
        self.feed.end()
        if self._on_closed is not None:
            await self._on_closed(self)

    def recover(self, frames: list[bytes], last: SessionInfo, conversation: str | None, reason: ev.RecoveryReason, ownerless_ms: int) -> None:
        """Take the session over from another replica, before `start`: its settings and transcript
        from its description and log, then what it left open settled in the log (pending requests
        `expired`, the query whose turn it started without a `result` one of subtype `owner_lost`)
        and `agent_recovered`. Queries it had not started yet run here: after a handover they are
        queued again; from an owner that died they end `owner_lost` too (it may have started one
        without the log saying so). The next CLI resumes conversation `conversation`. A query the
        log holds counts as run here: a copy re-sent after the lost owner's ack record (written after
        the ack) was lost gets the ack back instead of running twice."""
        self.model, self.permission_mode, self.created_at = last.model, last.permission_mode, last.created_at
        self.turns, self._cost_before_runner = last.turns, last.total_cost_usd
        self.claude_session_id = conversation
        open_queries: dict[str, ev.UserQuery | None] = {}  # None once its turn started
        open_requests: dict[str, None] = {}
        for frame in frames:
            event = _decode_event(frame).event
            if isinstance(event, ev.UserQuery):
                open_queries[event.query_id] = event
                self._acked(Ack(id=event.query_id, result={"query_id": event.query_id, "queued": event.queued, "position": 0}))
            elif isinstance(event, ev.TurnStarted) and event.query_id in open_queries:
                open_queries[event.query_id] = None
            elif isinstance(event, ev.TurnResult) and event.query_id is not None:
                open_queries.pop(event.query_id, None)
            elif isinstance(event, (ev.PermissionRequest, ev.Question)):
                open_requests[event.request_id] = None
            elif isinstance(event, ev.RequestResolved):
                open_requests.pop(event.request_id, None)
            if isinstance(event, TRANSCRIPT_KINDS):
                if isinstance(event, ev.ConversationReset):
                    self._transcript.clear()
                self._transcript.append(event)
        why = "the replica running this session was lost" if reason == "owner_lost" else "the replica running this session was shut down"
        for request_id in open_requests:
            self.emit(ev.RequestResolved(request_id=request_id, outcome="expired", message=why))
        for query_id, waiting in open_queries.items():
            if waiting is not None and reason == "handover":
                self._queue.append((query_id, _query_message(waiting.prompt, composed=not waiting.command)))
                self._wake.set()
            else:
                self._end_query(query_id, "owner_lost", f"{why} before this query ended; send it again")
        self.emit(ev.AgentRecovered(reason=reason, ownerless_ms=ownerless_ms))

    def _acked(self, ack: Ack) -> None:
        """Remember a frame id as run, with its ack."""
        done: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        done.set_result(ack)
        self._acks[ack.id] = done
        if len(self._acks) > ACKS_KEPT:
            self._acks.popitem(last=False)

    def hold(self) -> None:
        """The replica is draining: the running turn may finish, queued and new queries wait (for the
        replica the session is handed over to)."""
        self._holding = True

    async def leave(self) -> None:
        """Another replica runs the session from now on (it adopted it, or this one hands it over):
        from now on it emits nothing, its CLI stops, what its log still holds goes to Redis (a log
        fenced off writes nothing), and its clients here are ended so they resume at the new owner.
        A frame still waiting here on the CLI (a reset on its turn, a control call on its start)
        stops waiting and is refused: no CLI starts here again."""
        self._sealed = True
        self._queue.clear()
        self._stop_waiting("the session left this replica")
        for task in (self._pump_task, self._guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._runner_lock:
            await self._stop_runner()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.feed.log.close(ended=False)
        self.feed.end()

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    @property
    def epoch(self) -> str:
        return self.feed.epoch

    @property
    def last_seq(self) -> int:
        return self.feed.last_seq

    @property
    def total_cost_usd(self) -> float:
        return self._cost_before_runner + self._cost_of_runner

    async def _ensure_runner(self) -> None:
        """Start a CLI unless one is running (another frame may have started one meanwhile)."""
        async with self._runner_lock:
            if self._runner is None:
                await self._start_runner()

    def _check_here(self) -> None:
        """Raise unless the session still runs here: it is closed, or it left for another replica
        (a frame refused so is sent again to the next owner)."""
        if self.closed:
            raise GatewayError(ErrorCode.SESSION_CLOSED, "this session is closed")
        if self._sealed:
            raise _moved()

    async def _start_runner(self) -> None:
        """Called with `_runner_lock` held. Never once the session closed or left: nothing would stop that CLI."""
        self._check_here()
        self.reserve_cli()
        try:
            await self._start_runner_granted()
        finally:
            self._cli_granted = False  # used by the runner now, or given back

    async def _start_runner_granted(self) -> None:
        if self._asleep is not None:  # the hibernated CLI finishes writing the conversation before it is resumed
            await asyncio.shield(self._asleep)
        model, mode = self.model, self.permission_mode  # what the factory builds the runner with
        warm, self._warm = self._warm, None
        runner: AgentRunner | None = None
        if warm is not None:
            runner = await self._adopt(warm)
        try:
            if runner is None:
                runner = await self._started_runner(self.claude_session_id)
        except Exception as exc:
            if self.claude_session_id is None or NO_CONVERSATION not in str(exc):
                log.warning("session %s: agent failed to start: %r", self.id, exc)
                raise GatewayError(ErrorCode.AGENT_UNAVAILABLE, "the agent could not be started; try again later") from exc
            # The CLI that began the conversation died before saving any of it (frozen or killed in
            # its first turn): there is nothing to resume, so the conversation starts afresh.
            log.warning("session %s: conversation %s was never saved; starting a new one", self.id, self.claude_session_id)
            self.claude_session_id = None
            try:
                runner = await self._started_runner(None)
            except Exception as again:
                log.warning("session %s: agent failed to start: %r", self.id, again)
                raise GatewayError(ErrorCode.AGENT_UNAVAILABLE, "the agent could not be started; try again later") from again
        self._cost_before_runner += self._cost_of_runner
        self._cost_of_runner = 0.0
        self._runner = runner
        # set_model / set_permission_mode frames that ran while the CLI started changed only the
        # session (there was no runner to tell); the CLI was built before them.
        if self.model != model:
            with contextlib.suppress(GatewayError):  # a refusal is logged by _control; the session goes on
                await self._control(runner.set_model(self.model))
        if self.permission_mode != mode:
            with contextlib.suppress(GatewayError):
                await self._control(runner.set_permission_mode(self.permission_mode))

    async def _started_runner(self, resume: str | None) -> AgentRunner:
        runner = self._runner_factory(self, resume)
        if self._capacity is None:
            await self.metrics.cli_start(runner.start())
            return runner
        self._capacity.starting += 1
        try:
            async with self._capacity.starts:  # starts are CPU-bound: a few at a time
                await self.metrics.cli_start(runner.start())
        finally:
            self._capacity.starting -= 1
        return runner

    async def _adopt(self, warm: Warm) -> AgentRunner | None:
        """Take a pooled CLI, narrowed to this session's model and mode; None when it is gone or
        refused the narrowing (it is stopped: the caller starts a CLI of its own, never a wider one)."""
        runner = warm.runner
        runner.adopt(self)
        try:
            if not runner.alive:
                raise ConnectionError("the pooled agent exited")
            if self.model != warm.model:
                await self._control(runner.set_model(self.model))
            if self.permission_mode != warm.permission_mode:
                await self._control(runner.set_permission_mode(self.permission_mode))
            return runner
        except (GatewayError, ConnectionError) as exc:
            log.warning("session %s: the pooled agent could not be used (%s); starting one", self.id, exc)
            await runner.stop()
            return None
        except BaseException:  # cancelled: the session closed or left while it was narrowed; nothing else would stop it
            await asyncio.shield(runner.stop())
            raise

    # ---- capacity: CLI slots and hibernation -----------------------------------------------

    @property
    def holds_cli(self) -> bool:
        """Whether this session counts against the CLI limit: a CLI runs or starts, or is promised."""
        return not self.closed and (self._runner is not None or self._cli_granted)

    def reserve_cli(self) -> None:
        """Secure a CLI slot before the CLI is needed, or raise `at_capacity` (a no-op with one held)."""
        if not self.holds_cli:
            if self._capacity is not None:
                self._capacity.admit(self)
            self._cli_granted = True

    @property
    def can_hibernate(self) -> bool:
        """Idle with a CLI, and nothing in flight that needs it: no turn, query, approval, reset or start."""
        return (
            self.state == "idle" and self._runner is not None and self._current_query is None and not self._queue
            and not len(self.approvals) and not self._runner_lock.locked() and not self._reset_lock.locked()
        )

    def hibernate(self, reason: str) -> bool:
        """Stop the CLI of an idle session and keep the rest: its log, clients and conversation (the
        transcript stays in its config directory). The next query resumes it in a new CLI."""
        if not self.can_hibernate:
            return False
        runner, self._runner = self._runner, None
        assert runner is not None
        runner.adopt(RETIRED)
        self._set_state("hibernated", reason)
        log.info("session %s hibernated (%s)", self.id, reason, extra={"session_id": self.id})
        self._asleep = asyncio.create_task(runner.stop(), name=f"session-hibernate-{self.id}")
        self._retiring.add(self._asleep)
        self._asleep.add_done_callback(self._retiring.discard)
        return True

    async def _stop_runner(self) -> None:
        """Called with `_runner_lock` held."""
        runner, self._runner = self._runner, None
        self._tasks.clear()
        if runner is not None:
            runner.adopt(RETIRED)  # a reset's new CLI, say, gets none of this one's last words
            await runner.stop()

    async def _pump(self, start_cli: bool) -> None:
        """The one task that starts the CLI (unless the session begins hibernated), then sends
        queued queries one turn at a time (restarting a dead CLI, or waking a hibernated one, first)."""
        if start_cli:
            try:
                await self._ensure_runner()
                if self.state == "starting":  # else a reset sent meanwhile holds the state and sets it when done
                    self._set_state("idle")
            except GatewayError as exc:
                self._start_failed(exc)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and self.state in READY_STATES and not self._reset_lock.locked() and not self._holding:
                query_id, message = self._queue.popleft()
                await self._dispatch(query_id, message)

    async def _wake_cli(self) -> None:
        """A hibernated session's CLI starts again, resuming the conversation: `starting`, then the
        caller goes on (`running` for a query)."""
        self._set_state("starting", "wake")
        await self._ensure_runner()

    def _start_failed(self, exc: GatewayError) -> None:
        """No CLI runs now; the next query tries to start one."""
        self.emit(ev.AgentError(code="agent_start_failed", message=exc.message, recoverable=True))
        self._set_state("failed", "agent_start_failed")

    async def _dispatch(self, query_id: str, message: dict[str, Any]) -> None:
        self._current_query, self._current_uuid = query_id, message["uuid"]
        self._fork_points[query_id] = self._last_uuid
        if len(self._fork_points) > self.limits.transcript_max_events:
            self._fork_points.popitem(last=False)
        try:
            if self.state == "hibernated":
                await self._wake_cli()
                if self._current_query != query_id:  # a reset or close dropped it while the CLI started
                    return
            self._set_state("running")
            self.emit(ev.TurnStarted(query_id=query_id))
            if self._guard is not None:
                self._guard.cancel()  # the last turn's: it ended, and stops at its next look anyway
            self._guard = asyncio.create_task(self._guard_turn(query_id), name=f"session-guard-{self.id}")
            await self._ensure_runner()
            if self._current_query != query_id:  # a reset or close dropped it while the CLI started
                return
            assert self._runner is not None
            self.metrics.turn_started()
            await self._runner.query(message)
        except Exception as exc:
            log.warning("session %s: query failed: %r", self.id, exc)
            if self._current_query != query_id:  # a reset, interrupt or close ended it meanwhile
                return
            self.emit(ev.AgentError(code=ErrorCode.AGENT_UNAVAILABLE, message="the agent could not take the query; send it again", recoverable=True))
            self._drop_current("the agent could not take the query", "agent_unavailable")
            self._set_state("failed" if self._runner is None else "idle", "agent_unavailable")

    async def _guard_turn(self, query_id: str) -> None:
        """Watch one query's turn until it ends; end it when its CLI won't.

        A CLI can take a turn it never finishes (frozen, wedged by input the API refused): the turn
        is abandoned when an interrupt isn't honoured within CONTROL_TIMEOUT_S, or when the CLI
        says nothing for `turn_watchdog_s`. Waiting on an approval or on the CLI's start is not
        silence: those have deadlines of their own. A reset in progress handles its turn itself.
        """
        loop = asyncio.get_running_loop()
        heard, news_at = self._heard, loop.time()
        while self._current_query == query_id:
            await asyncio.sleep(GUARD_TICK_S)
            now = loop.time()
            if self._heard != heard or len(self.approvals) or self._runner is None or self._reset_lock.locked():
                heard, news_at = self._heard, now
            if self._current_query != query_id or self._reset_lock.locked():
                continue
            if self.state == "interrupted" and now - self._interrupted_at >= CONTROL_TIMEOUT_S:
                self._abandon_turn(f"the agent did not stop within {CONTROL_TIMEOUT_S:.0f} s of the interrupt; it was replaced")
            elif now - news_at >= self._turn_watchdog_s:
                self._abandon_turn(f"the agent produced no output for {self._turn_watchdog_s:g} s; it was replaced")

    def _abandon_turn(self, why: str) -> None:
        """End the running turn the CLI won't finish: its query gets an `agent_unresponsive` result,
        and the CLI is stopped in the background (a frozen one takes the SDK's ~10 s to kill). The
        next query starts a new CLI resuming the conversation, as after a crash."""
        runner, self._runner = self._runner, None  # from now on no query reaches the stuck CLI
        self._tasks.clear()
        log.warning("session %s: %s", self.id, why)
        self.approvals.cancel_all()
        self.emit(ev.AgentError(code="agent_unresponsive", message=why, recoverable=True))
        self._drop_current(why, "agent_unresponsive")
        self._set_state("idle", "agent_unresponsive")
        if runner is not None:
            runner.adopt(RETIRED)  # its turn's late `result` would end the next query
            retire = asyncio.create_task(runner.stop(), name=f"session-retire-{self.id}")
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)
        self._wake.set()

    # ---- events ----------------------------------------------------------------------------

    @property
    def last_activity(self) -> int:
        """The last event or client frame (unix ms); events carry their own time, read off the feed."""
        return max(self._touched, self.feed.last_ts)

    def emit(self, event: ev.EventBody) -> int:
        if self._sealed:
            return self.feed.last_seq
        if self._lease is not None and not self._lease():
            # Another replica may run the session by now: nothing more is shown or written from here.
            log.error("session %s: its lease may have run out; this replica lets it go", self.id)
            self._sealed = self._lapsed = True
            if self._on_lease_lapsed is not None:
                self._on_lease_lapsed()
            return self.feed.last_seq
        if type(event) is ev.Stream:  # nearly every event: test it first
            if event.parent_tool_use_id is None:
                delta = event.event.get("delta")
                if delta is not None:
                    kind = delta.get("type")
                    if kind == "text_delta":
                        self._streaming.append(delta["text"])
                        if self.metrics.awaiting_token:
                            self.metrics.first_token()
                    elif kind == "thinking_delta":
                        self._thinking.append(delta["thinking"])
        else:
            if isinstance(event, TRANSCRIPT_KINDS):
                if isinstance(event, ev.ConversationReset):
                    self._restart_transcript()
                self._transcript.append(event)
                if isinstance(event, ev.AssistantMessage):
                    self._streaming.clear()
                    self._thinking.clear()
            if self._on_described is not None and isinstance(event, DESCRIBED_KINDS):
                self._on_described(self)
        return self.feed.emit(event)

    def _restart_transcript(self) -> None:
        """A reset starts the transcript again: it keeps only the queries sent while the reset ran,
        which wait to run in the new conversation (queries queued before it were dropped)."""
        self._fork_points.clear()  # they name messages of the conversation that ended
        self._last_uuid = None
        waiting = {query_id for query_id, _ in self._queue}
        kept = [e for e in self._transcript if isinstance(e, ev.UserQuery) and e.query_id in waiting]
        self._transcript.clear()
        self._transcript.extend(kept)

    def _end_query(self, query_id: str, subtype: str, why: str) -> None:
        """The `result` of a query that ends without the CLI's: every query ends with exactly one
        `result`, so a client waiting on one (a spinner, `run()`, a run poll) always gets it."""
        self.emit(ev.TurnResult(query_id=query_id, subtype=subtype, is_error=True, duration_ms=0, duration_api_ms=0, num_turns=0, errors=[why]))

    def _drop_current(self, why: str, subtype: str = "cancelled") -> None:
        """End the running query when its turn won't end with the CLI's own `result`."""
        if self._current_query is not None:
            self._end_query(self._current_query, subtype, why)
            self._current_query = None

    def _drop_queued(self, why: str) -> None:
        while self._queue:
            self._end_query(self._queue.popleft()[0], "cancelled", why)

    def _set_state(self, state: ev.SessionState, reason: str | None = None) -> None:
        if state != self.state and self.state != "closed":  # closed is final, whatever finishes after it
            self.state = state
            self.metrics.state_changed(state)
            self.emit(ev.StateChanged(state=state, reason=reason))
            self._sealed = self._sealed or state == "closed"  # a session that left stays quiet too

    def _sync_state(self) -> None:
        """Approvals changed: move between running and awaiting_approval. A request the SDK cancels
        because its CLI died changes nothing: `on_exit` ends the turn and sets the state."""
        if self.state == "running" and len(self.approvals):
            self._set_state("awaiting_approval")
        elif self.state == "awaiting_approval" and not len(self.approvals) and self._runner is not None and self._runner.alive:
            self._set_state("running")

    # ---- runner hooks ----------------------------------------------------------------------

    def on_message(self, message: Any) -> None:
        self._heard += 1
        if message.__class__ is StreamEvent:  # nearly every message of a turn: the shortest path
            self.emit(stream_event(message))
            return
        own_turn = isinstance(message, ResultMessage) and self._cli_started(message)
        if self._clearing is not None and not own_turn and isinstance(message, (ResultMessage, ConversationResetMessage)):
            # The `/clear` of a soft reset: its result is not a turn; the reset event stands for it.
            if isinstance(message, ResultMessage) and not self._clearing.done():
                self.claude_session_id = message.session_id
                self._clearing.set_result(None)
            return
        if isinstance(message, (AssistantMessage, UserMessage)) and message.parent_tool_use_id is None and message.uuid:
            self._last_uuid = message.uuid
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self.claude_session_id = message.data.get("session_id", self.claude_session_id)
            if self.fork_of is not None and self.claude_session_id != self.fork_of.claude_session_id:
                self.fork_of = None  # the fork has its own CLI session now: later restarts resume that
            self.model = message.data.get("model", self.model)
        event = to_event(message, None if own_turn else self._current_query)
        if isinstance(message, ResultMessage):
            # The CLI reports a running total per process; the session's total spans restarts.
            runner_total = message.total_cost_usd if message.total_cost_usd is not None else self._cost_of_runner
            assert isinstance(event, ev.TurnResult)
            event.cost_usd = max(0.0, runner_total - self._cost_of_runner)
            self._cost_of_runner = runner_total
            event.total_cost_usd = self.total_cost_usd
        if isinstance(event, ev.System) and event.subtype == "init" and "slash_commands" in event.data:
            # Clients run only the profile's commands (prompts never run as commands): advertise those.
            runnable = {"compact", *self.spec.profile.slash_commands}
            event.data["slash_commands"] = [c for c in event.data["slash_commands"] if c in runnable]
        if isinstance(event, ev.RateLimit):
            self.rate_limit = event.info
        elif isinstance(event, ev.Task):
            self._track_task(event)
        if event is not None:
            self.emit(event)
        if isinstance(message, ResultMessage):
            self.turns += 1
            if own_turn:  # it ends no query: the running one (if any) goes on
                return
            self.claude_session_id = message.session_id
            self._current_query = None
            self.metrics.turn_ended()
            if self.state in BUSY_STATES:
                self._set_state("idle")
            self._turn_done.set()
            self._wake.set()

    def _track_task(self, task: ev.Task) -> None:
        """Keep `SessionInfo.tasks`: a task is in from its start until a terminal status, which
        either a notification or an update may bring (the CLI sometimes sends only one)."""
        if task.status in TERMINAL_TASK_STATUSES:
            self._tasks.pop(task.task_id, None)
        elif task.subtype == "task_started":
            self._tasks[task.task_id] = TaskInfo(
                task_id=task.task_id, description=task.description, task_type=task.task_type, tool_use_id=task.tool_use_id
            )
        elif task.subtype == "task_progress" and task.task_id in self._tasks:
            self._tasks[task.task_id].last_tool_name = task.last_tool_name

    def _cli_started(self, result: ResultMessage) -> bool:
        """Whether `result` ends a turn the CLI started itself (when a background command ends, say)
        without taking in the running query: then it ends no query. Each query is sent with a uuid,
        and the CLI lists the ones a turn took in."""
        if (result.origin or {}).get("kind", "human") == "human":
            return False
        if self._current_query is None:
            return True
        return self._current_uuid != result.user_message_uuid and self._current_uuid not in (result.user_message_uuids or ())

    def on_exit(self, runner: AgentRunner, error: BaseException | None) -> None:
        if runner is not self._runner or self.closed:
            return
        self._runner = None
        self._tasks.clear()  # they ran in the CLI
        log.warning("session %s: agent exited: %r", self.id, error)
        self.approvals.cancel_all()
        if isinstance(error, CLIJSONDecodeError) and "maximum buffer size" in str(error):
            # The SDK can't read past a message over `max_buffer_size` and drops its CLI: the turn's
            # own result is lost with it, so the query ends with one saying why.
            code, message = "message_too_large", "The agent sent a message larger than the gateway reads (max_cli_message_bytes); the conversation continues on the next query."
            why = "the agent sent a message over max_cli_message_bytes during this turn"
        else:
            code, message = "agent_exited", "The agent process stopped unexpectedly; the conversation continues on the next query."
            why = "the agent process stopped during this turn"
        self.emit(ev.AgentError(code=code, message=message, recoverable=True))
        self._drop_current(why, code)
        self._stop_waiting("the agent exited")
        self._set_state("idle", code)
        self._wake.set()

    def _stop_waiting(self, why: str) -> None:
        """A reset waiting on the CLI (the end of an interrupted turn, its `/clear`) stops waiting:
        the CLI is gone or going."""
        self._turn_done.set()
        if self._clearing is not None and not self._clearing.done():
            self._clearing.set_exception(ConnectionError(why))

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResult:
        return await self.metrics.approval(tool_name, self.approvals.ask(tool_name, tool_input, ctx, self.spec.profile.approval_timeout_s))

    # ---- client frames ---------------------------------------------------------------------

    async def execute(self, frame: cf.ClientFrame, actor: ev.Actor) -> Ack:
        """Run one client frame at most once per frame id; a repeated id gets the first ack back.

        The frame runs in a task of its own: a client that disconnects mid-frame doesn't cut it
        short, and a copy re-sent meanwhile (or later) waits for and shares its outcome.
        """
        if isinstance(frame, (cf.Open, cf.Attach, cf.Ping)):  # connection frames, even under a known id
            raise GatewayError(ErrorCode.UNKNOWN_TYPE, f"{type(frame).__name__} is not a session frame")
        known = self._acks.get(frame.id)
        if known is None and self._ack_store is not None:
            stored = await self._ack_store.get(frame.id)  # run by another replica that owned the session
            if stored is not None:
                return Ack(id=stored.id, result=stored.result, duplicate=True)
            known = self._acks.get(frame.id)  # a copy sent while we looked
        if known is not None:
            first = await asyncio.shield(known)
            return Ack(id=first.id, result=first.result, duplicate=True)
        self._check_here()
        running = asyncio.ensure_future(self._execute_once(frame, actor))
        self._acks[frame.id] = running
        if len(self._acks) > ACKS_KEPT:
            self._acks.popitem(last=False)
        ack = await asyncio.shield(running)
        replied = self._close_replied
        if isinstance(frame, cf.Close) and replied is not None:
            # The caller queues the ack as soon as this returns, in this loop turn; the feed ends after.
            asyncio.get_running_loop().call_soon(_settle, replied)
        return ack

    async def _execute_once(self, frame: cf.ClientFrame, actor: ev.Actor) -> Ack:
        try:
            ack = Ack(id=frame.id, result=await self._execute(frame, actor))
            if self._lapsed:  # its lease lapsed meanwhile: what it did was neither shown nor written
                raise _moved()
            # An ack follows the events its frame caused: with a log that commits later, once they are
            # given (a close's `closed` too: its task, started by the frame, emits it in its first step).
            if isinstance(frame, cf.Close):
                await asyncio.sleep(0)
            caused = self.feed.last_seq
            await self.feed.log.committed(caused)
            if self.feed.log.committed_seq < caused and not self.closed:
                # Fenced off before they were written: another replica owns the session, and neither the
                # events nor an ack record may say this frame ran (its copy must run there).
                raise _moved()
        except BaseException:
            self._acks.pop(frame.id, None)  # not executed: the same id may be tried again
            raise
        if self._ack_store is not None:
            self._ack_store.put(ack)
        return ack

    async def _execute(self, frame: cf.ClientFrame, actor: ev.Actor) -> dict[str, Any] | None:
        self._touched = now_ms()
        if isinstance(frame, cf.Query):
            prompt = frame.prompt if isinstance(frame.prompt, str) else msgspec.to_builtins(frame.prompt)  # the SDK writes it with json
            return self._enqueue(frame.id, prompt, actor)
        if isinstance(frame, cf.Compact):
            # The one command a client may run: sent without `client_composed`, as `/clear` is.
            command = "/compact" + (f" {frame.instructions}" if frame.instructions else "")
            return self._enqueue(frame.id, command, actor, composed=False)
        if isinstance(frame, cf.RunCommand):
            self.spec.profile.check_command(frame.command)
            return self._enqueue(frame.id, f"/{frame.command}" + (f" {frame.args}" if frame.args else ""), actor, composed=False)
        if isinstance(frame, cf.GetMcpStatus):
            return await self._mcp_status()
        if isinstance(frame, (cf.ReconnectMcpServer, cf.ToggleMcpServer)):
            self.spec.profile.check_mcp_server(frame.name)
            runner = await self._running_agent()
            if isinstance(frame, cf.ReconnectMcpServer):
                await self._control(runner.reconnect_mcp_server(frame.name))
            else:
                await self._control(runner.toggle_mcp_server(frame.name, frame.enabled))
            return None
        if isinstance(frame, cf.GetContextUsage):
            return await self._context_usage()
        if isinstance(frame, cf.StopTask):
            await self._stop_task(frame.task_id)
            return None
        if isinstance(frame, cf.RewindFiles):
            await self._rewind_files(frame.query_id, actor)
            return None
        if isinstance(frame, cf.Fork):
            if self._forker is None:
                raise GatewayError(ErrorCode.FORBIDDEN_OPTION, "this gateway does not fork sessions")
            forked = await self._forker(self, frame.query_id)
            return {"session_id": forked.id}
        if isinstance(frame, cf.PermissionResponse):
            self.approvals.answer_permission(frame, actor)
            return None
        if isinstance(frame, cf.QuestionResponse):
            self.approvals.answer_question(frame, actor)
            return None
        if isinstance(frame, cf.Interrupt):
            return await self._interrupt()
        if isinstance(frame, cf.SetModel):
            await self._set_model(frame.model, actor)
            return None
        if isinstance(frame, cf.SetPermissionMode):
            await self._set_permission_mode(frame.mode, actor)
            return None
        if isinstance(frame, cf.ResetConversation):
            await self.reset_conversation(frame.mode, actor)
            return None
        if isinstance(frame, cf.Close):
            # Its clients' streams end after this frame's ack is on its way, so the client that asked gets it.
            if self._closing is None:
                self._close_replied = asyncio.get_running_loop().create_future()
            self._begin_close("closed by client")
            return None
        raise AssertionError(f"unhandled session frame {type(frame).__name__}")

    def _enqueue(self, query_id: str, prompt: str | list[Any], actor: ev.Actor, composed: bool = True) -> dict[str, Any]:
        if len(self._queue) >= self.limits.max_queued_queries:
            raise GatewayError(ErrorCode.QUEUE_FULL, f"{self.limits.max_queued_queries} queries are already queued")
        self.reserve_cli()  # refused now (`at_capacity`) rather than failing once queued
        queued = self.state not in READY_STATES or bool(self._queue) or self._reset_lock.locked()
        message = _query_message(prompt, composed)
        self._query_uuids[query_id] = message["uuid"]
        if len(self._query_uuids) > self.limits.transcript_max_events:
            self._query_uuids.popitem(last=False)
        self._queue.append((query_id, message))
        self.emit(ev.UserQuery(query_id=query_id, prompt=prompt, by=actor, queued=queued, command=not composed))
        self._wake.set()
        # position: 0 when the query starts at once, else its place in the line (1 runs next).
        return {"query_id": query_id, "queued": queued, "position": len(self._queue) if queued else 0}

    async def _running_agent(self) -> AgentRunner:
        """The CLI, started if need be (a control call on a session whose CLI is down)."""
        await self._ensure_runner()
        if self._runner is None:  # it died again meanwhile
            raise GatewayError(ErrorCode.AGENT_UNAVAILABLE, "the agent is not running; try again")
        return self._runner

    async def _stop_task(self, task_id: str) -> None:
        if task_id not in self._tasks or self._runner is None:
            raise GatewayError(ErrorCode.UNKNOWN_TASK, f"no running task {task_id}")
        await self._control(self._runner.stop_task(task_id))

    def fork_point(self, query_id: str | None) -> tuple[ForkPoint | None, list[ev.EventBody]]:
        """Where a fork resumes, and the transcript it starts with: the conversation so far, or the
        part before `query_id`. No fork point when there is no conversation to continue."""
        transcript = [e for e in self._transcript if not isinstance(e, ev.ConversationReset)]
        if query_id is None:
            resume_at = None
        elif query_id in self._fork_points:
            resume_at = self._fork_points[query_id]
            start = next((i for i, e in enumerate(transcript) if isinstance(e, ev.UserQuery) and e.query_id == query_id), 0)
            transcript = transcript[:start]
            if resume_at is None:  # the query began the conversation: the fork starts a fresh one
                return None, []
        else:
            raise GatewayError(ErrorCode.UNKNOWN_QUERY, f"no query {query_id} has run in this conversation")
        if self.claude_session_id is None:
            return None, []
        inherited = {e.query_id: self._fork_points[e.query_id] for e in transcript if isinstance(e, ev.UserQuery) and e.query_id in self._fork_points}
        return ForkPoint(self.claude_session_id, resume_at, resume_at if query_id else self._last_uuid, inherited), transcript

    def seed(self, fork_of: ForkPoint | None, transcript: list[ev.EventBody]) -> None:
        """Start a fork from its source's conversation (before `start`): its CLI resumes it, its
        clients see the transcript it had."""
        self.fork_of, self.claude_session_id = fork_of, fork_of.claude_session_id if fork_of else None
        if fork_of is not None:
            self._last_uuid = fork_of.last_uuid
            self._fork_points.update(fork_of.fork_points)
        for event in transcript:
            self.emit(event)

    async def _rewind_files(self, query_id: str, actor: ev.Actor) -> None:
        if not self.spec.profile.enable_file_checkpointing:
            raise GatewayError(ErrorCode.FORBIDDEN_OPTION, f"profile {self.spec.profile.name!r} does not keep file checkpoints")
        message_uuid = self._query_uuids.get(query_id)
        if message_uuid is None:
            raise GatewayError(ErrorCode.UNKNOWN_QUERY, f"no query {query_id} in this session")
        await self._control((await self._running_agent()).rewind_files(message_uuid))
        self.emit(ev.FilesRewound(query_id=query_id, by=actor))

    async def _mcp_status(self) -> dict[str, Any]:
        raw = await self._control((await self._running_agent()).get_mcp_status())
        declared = self.spec.profile.mcp_servers
        servers = [s for s in raw.get("mcpServers", []) if s.get("name") in declared]
        return {"mcpServers": msgspec.to_builtins(msgspec.convert(servers, list[McpServerStatus]))}

    async def _context_usage(self) -> dict[str, Any]:
        raw = await self._control((await self._running_agent()).get_context_usage())
        return msgspec.to_builtins(msgspec.convert(raw, ContextUsage))  # type: ignore[no-any-return]

    async def _control(self, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, CONTROL_TIMEOUT_S)
        except Exception as exc:  # a timeout, or the CLI refusing or gone
            log.warning("session %s: control call failed: %r", self.id, exc)
            raise GatewayError(ErrorCode.AGENT_ERROR, "the agent did not accept the request") from exc

    async def _interrupt(self) -> dict[str, Any]:
        # Only a client's turn is interrupted: a reset also holds the state at `running` while its
        # `/clear` runs, and interrupting that would leave the conversation uncleared.
        if self.state not in ("running", "awaiting_approval") or self._current_query is None:
            return {"interrupted": False}
        if self._runner is None:  # the turn waits for its CLI to (re)start: it is never sent
            self._drop_current("interrupted before it reached the agent")
            self._set_state("idle")
            return {"interrupted": True}
        query_id = self._current_query
        self._set_state("interrupted")
        self._interrupted_at = asyncio.get_running_loop().time()
        try:
            await self._control(self._runner.interrupt())
        except GatewayError:
            # The CLI refused the interrupt or didn't take it in time: its turn is abandoned now rather
            # than at the guard's next look (one outcome: the query ends `agent_unresponsive`).
            if self._current_query == query_id and self.state == "interrupted":
                self._abandon_turn("the agent did not take the interrupt; it was replaced")
        return {"interrupted": True}

    async def _set_model(self, model: str, actor: ev.Actor) -> None:
        self.spec.profile.check_model(model)
        if self._runner is not None:
            await self._control(self._runner.set_model(model))
        self.model = model
        self.emit(ev.ModelChanged(model=model, by=actor))

    async def _set_permission_mode(self, mode: str, actor: ev.Actor) -> None:
        self.spec.profile.check_mode(mode)
        if self._runner is not None:
            await self._control(self._runner.set_permission_mode(mode))
        self._mode_applied(mode, actor)

    def _mode_applied(self, mode: str, actor: ev.Actor) -> None:
        """The CLI runs in `mode` now (a mode change, or a `setMode` suggestion applied)."""
        self.permission_mode = mode
        self.emit(ev.PermissionModeChanged(mode=mode, by=actor))

    async def reset_conversation(self, mode: str, actor: ev.Actor) -> None:
        """Start a fresh conversation in this session.

        Soft: the running CLI clears its conversation (`/clear`), keeping its process, settings
        and permission rules. Hard: the CLI is replaced by a new one. A running turn is
        interrupted first; queries queued before the reset are dropped, ones sent while it runs
        wait for it and run in the new conversation. Resets from several tabs take turns.
        """
        try:
            async with self._reset_lock:
                await self._reset(mode, actor)
        finally:
            self._wake.set()  # queries queued meanwhile run now, in the new conversation

    async def _reset(self, mode: str, actor: ev.Actor) -> None:
        """Called with `_reset_lock` held: queued queries wait, even once the interrupted turn has ended."""
        self._drop_queued("the conversation was reset")  # the running turn ends with its own result
        turn_over = True
        if self._runner is not None and self.state in BUSY_STATES:
            self._turn_done.clear()
            with contextlib.suppress(GatewayError):
                await self._control(self._runner.interrupt())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._turn_done.wait(), CONTROL_TIMEOUT_S)
            turn_over = self._turn_done.is_set()
            if self.closed:  # closed while the reset waited: nothing is left to reset
                return
            self._check_here()  # it left this replica meanwhile: the reset runs at the next owner
        self.approvals.cancel_all()
        self._drop_current("the conversation was reset")  # the interrupted turn didn't end in time
        self._streaming.clear()
        self._thinking.clear()
        self._set_state("running", "conversation_reset")  # holds new queries back until the reset is done
        failed: GatewayError | None = None
        try:
            async with self._runner_lock:  # a CLI still starting finishes first
                # A turn that ignored the interrupt would take the `/clear`: its CLI is replaced instead.
                if mode == "soft" and turn_over and self._runner is not None and await self._clear_conversation():
                    pass
                else:
                    await self._stop_runner()
                    self.claude_session_id = None
                    if mode == "hard" and not self.closed:
                        await self._start_runner()
        except GatewayError as exc:  # the new CLI did not start: the conversation is reset all the same
            failed = exc
        finally:
            if not self.closed:  # closed meanwhile (another tab): the reset has nothing left to report
                self.emit(ev.ConversationReset(mode=mode, by=actor))  # type: ignore[arg-type]
                if failed is None:
                    self._set_state("idle", "conversation_reset")
                else:
                    self._start_failed(failed)
        if not self.closed:
            self._check_here()  # it left this replica while the CLI was replaced: the reset runs at the next owner

    async def _clear_conversation(self) -> bool:
        """Ask the CLI for `/clear`; False when it didn't confirm (the caller replaces the CLI)."""
        assert self._runner is not None
        self._clearing = asyncio.get_running_loop().create_future()
        try:
            await self._runner.query(CLEAR_MESSAGE)
            await asyncio.wait_for(self._clearing, CONTROL_TIMEOUT_S)
        except Exception as exc:
            log.warning("session %s: /clear failed, replacing the CLI: %r", self.id, exc)
            return False
        finally:
            self._clearing = None
        # The CLI's running cost total starts again from zero after a clear.
        self._cost_before_runner += self._cost_of_runner
        self._cost_of_runner = 0.0
        return True

    # ---- attach / snapshot -----------------------------------------------------------------

    async def attach(self, sink: Sink, reply_id: str, connection: str, after: int, epoch: str | None) -> tuple[Attached | Reset, list[bytes]]:
        """Subscribe a client connection's `sink`: its first frame, and the frames after `after` to send next.

        The first frame is `attached`, or `reset` with a snapshot when the frames after `after` can't
        all be served (then there is no replay). One place for both transports, so WebSocket and SSE
        clients resume by the same rules. The caller queues both before it awaits anything: the feed
        merged the replay with what was emitted while it was read, and delivers the rest directly.
        A snapshot holds every event emitted: with a log that commits later (Redis), the reset waits
        until the log has committed them all, so no client holds state a new owner would not have.
        """
        if epoch is None or epoch == self.feed.epoch:
            frames = await self.feed.attach(sink, after)
            if frames is not None:
                self.connections += 1
                attached = Attached(id=reply_id, connection=connection, after=after, session=self.info(), protocol=PROTOCOL_VERSION)
                return attached, frames
        snapshot = self.snapshot_now()  # no await before subscribing: the snapshot and the live tail meet
        position, tail, log_store = snapshot.session.last_seq, [], self.feed.log
        if log_store.committed_seq < position:
            pending = Pending(log_store.committed_seq + 1)  # what is committed while the reset waits
            self.feed.subscribe(pending)
            try:
                await log_store.committed(position)
            finally:
                self.feed.detach(pending)
            if pending.ended:
                if not self.closed:  # events were lost, not written (an outage's buffer overflowed): again
                    return await self.attach(sink, reply_id, connection, after, epoch)
            else:
                tail = pending.merge([], position) or []
                self.feed.subscribe(sink)
        else:
            self.feed.subscribe(sink)
        self.connections += 1
        return Reset(id=reply_id, reason=reset_reason(epoch, after, snapshot.session), connection=connection, snapshot=snapshot), tail

    def detach(self, sink: Sink) -> None:
        self.feed.detach(sink)
        self.connections -= 1

    def info(self) -> SessionInfo:
        profile = self.spec.profile
        return SessionInfo(
            session_id=self.id,
            profile=profile.name,
            model=self.model,
            permission_mode=self.permission_mode,
            state=self.state,
            epoch=self.feed.epoch,
            last_seq=self.feed.last_seq,
            created_at=self.created_at,
            last_activity=self.last_activity,
            turns=self.turns,
            total_cost_usd=self.total_cost_usd,
            queued=len(self._queue),
            pending=self.approvals.events(),
            allowed_models=profile.models,
            allowed_modes=list(profile.permission_modes),
            limits=self.limits,
            rate_limit=self.rate_limit,
            tasks=list(self._tasks.values()),
        )

    async def snapshot(self) -> Snapshot:
        """Async like a remote session's (the transports hold either)."""
        return self.snapshot_now()

    async def committed_snapshot(self) -> Snapshot:
        """A snapshot once the log holds every event it reflects (what another replica's client is
        given with a reset: nothing in it is lost should this replica die)."""
        snapshot = self.snapshot_now()
        await self.feed.log.committed(snapshot.session.last_seq)
        return snapshot

    def snapshot_now(self) -> Snapshot:
        return Snapshot(
            session=self.info(),
            transcript=list(self._transcript),  # type: ignore[arg-type]
            streaming_text="".join(self._streaming) or None,
            streaming_thinking="".join(self._thinking) or None,
        )

    # ---- run-and-poll ----------------------------------------------------------------------

    async def cancel_query(self, query_id: str) -> bool:
        """Cancel one query: interrupt it when it is the running turn, withdraw it when still queued.

        A withdrawn query gets a `result` with subtype `cancelled`, so every query still ends with
        exactly one result. False when the query is neither running nor queued.
        """
        if query_id == self._current_query:
            return bool((await self._interrupt())["interrupted"])
        for queued in self._queue:
            if queued[0] == query_id:
                self._queue.remove(queued)
                self._end_query(query_id, "cancelled", "cancelled before it ran")
                return True
        return False
