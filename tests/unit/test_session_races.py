"""Session races that need exact timing: a fake runner decides when the CLI starts, answers and dies.

Each scenario is also reachable through the real stack, but only by chance there; the behaviour of
the real CLI around them is covered in tests/integration/test_lifecycle.py.
"""

import asyncio
import json
from typing import Any

import pytest
from claude_agent_sdk import ResultMessage, StreamEvent
from claude_agent_sdk.types import ToolPermissionContext

from gateway.config import Settings
from gateway.events.log import MemoryEventLog
from gateway.profiles import DEMO_PROFILE, narrow
from gateway.sessions.manager import session_limits
from gateway.sessions.session import Session
from gateway.wire.client import Close, Interrupt, Open, PermissionResponse, Query, ResetConversation
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor

ALICE = Actor(principal="alice", connection="c1")


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def push(self, frame: bytes) -> None:
        self.events.append(json.loads(frame)["event"])

    def end(self) -> None:
        pass

    def results(self, query_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "result" and e["query_id"] == query_id]

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["kind"] == "state"]


class FakeRunner:
    """Starts after `start_delay`, fails to start when `fail_start`, ignores interrupts when `deaf`."""

    def __init__(self, hooks: Session, fleet: "Fleet", resume: str | None = None) -> None:
        self.hooks, self.fleet = hooks, fleet
        self.claude_session_id: str | None = resume
        self.sent: list[dict[str, Any]] = []
        self.alive = False

    async def start(self) -> None:
        await asyncio.sleep(self.fleet.start_delay)
        if self.fleet.fail_start:
            raise RuntimeError("the CLI would not start")
        if self.claude_session_id is not None and self.claude_session_id not in self.fleet.saved:
            raise RuntimeError(f"No conversation found with session ID: {self.claude_session_id}")
        self.alive = True

    async def query(self, message: dict[str, Any]) -> None:
        if not self.alive:
            raise ConnectionError("the CLI is gone")
        self.sent.append(message)

    async def interrupt(self) -> None:
        if not self.fleet.deaf:
            self.result(terminal_reason="aborted_streaming")

    async def set_model(self, model: str | None) -> None: ...

    def adopt(self, hooks: Session) -> None:
        self.hooks = hooks

    async def set_permission_mode(self, mode: str) -> None: ...

    async def stop(self) -> None:
        await asyncio.sleep(self.fleet.stop_delay)
        for _ in range(self.fleet.words_after_stop):  # the reader delivers what it had buffered
            await asyncio.sleep(0)
            self.stream()
        self.alive = False

    def result(self, terminal_reason: str = "completed", **fields: Any) -> None:
        self.hooks.on_message(ResultMessage(
            subtype="success", duration_ms=1, duration_api_ms=1, is_error=False, num_turns=1, session_id="cs",
            terminal_reason=terminal_reason, **fields,
        ))

    def stream(self) -> None:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}
        self.hooks.on_message(StreamEvent(uuid="u", session_id="cs", event=delta, parent_tool_use_id=None))

    def die(self) -> None:
        self.alive = False
        self.hooks.on_exit(self, RuntimeError("killed"))


class Fleet:
    def __init__(self) -> None:
        self.start_delay = 0.0
        self.fail_start = False
        self.deaf = False
        self.words_after_stop = 0
        self.stop_delay = 0.0
        self.saved = {"cs"}  # conversations the CLI has written to disk (resumable)
        self.runners: list[FakeRunner] = []

    def __call__(self, session: Session, resume: str | None) -> FakeRunner:
        self.runners.append(FakeRunner(session, self, resume))
        return self.runners[-1]

    @property
    def current(self) -> FakeRunner:
        return self.runners[-1]


@pytest.fixture
async def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
async def session(fleet: Fleet) -> Any:
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    s = Session(session_id="s1", principal="alice", spec=spec, log_store=MemoryEventLog(10_000, 1 << 26, 3600), runner_factory=fleet,
                limits=session_limits(Settings()))
    sink = Sink()
    s.feed.subscribe(sink)
    s.start()
    await settle()
    assert s.state == "idle"
    yield s, sink
    await s.close("test over")


async def settle(seconds: float = 0.02) -> None:
    await asyncio.sleep(seconds)


async def test_a_reset_during_a_failing_restart_ends_the_query_once(session: Any, fleet: Fleet) -> None:
    s, sink = session
    fleet.current.die()
    fleet.start_delay, fleet.fail_start = 0.1, True
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()  # the pump is restarting the CLI for q1
    await s.execute(ResetConversation(id="r1", mode="soft"), ALICE)  # waits for that start to fail
    await settle(0.2)
    assert [r["subtype"] for r in sink.results("q1")] == ["cancelled"]  # not agent_unavailable as well
    assert s.state == "idle"


async def test_a_hard_reset_whose_cli_fails_to_start_is_acked_and_leaves_the_session_failed(session: Any, fleet: Fleet) -> None:
    s, sink = session
    fleet.fail_start = True
    ack = await s.execute(ResetConversation(id="r1", mode="hard"), ALICE)
    assert ack.result is None  # the reset happened: the conversation is fresh; resending it would reset again
    kinds = [e["kind"] for e in sink.events]
    assert kinds[-3:] == ["conversation_reset", "error", "state"]
    assert sink.events[-2]["code"] == "agent_start_failed" and s.state == "failed"
    fleet.fail_start = False
    await s.execute(Query(id="q1", prompt="hi"), ALICE)  # the next query starts a CLI
    await settle()
    fleet.current.result()
    assert [r["subtype"] for r in sink.results("q1")] == ["success"]


async def test_nothing_follows_closed(session: Any, fleet: Fleet) -> None:
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    fleet.words_after_stop = 3
    await s.close("closed by client")
    assert sink.events[-1] == {"kind": "state", "state": "closed", "reason": "closed by client"}
    assert [r["subtype"] for r in sink.results("q1")] == ["cancelled"]


async def test_an_interrupt_while_the_cli_restarts_drops_the_query(session: Any, fleet: Fleet) -> None:
    s, sink = session
    fleet.current.die()
    fleet.start_delay = 0.1
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    ack = await s.execute(Interrupt(id="i1"), ALICE)
    assert ack.result == {"interrupted": True}
    await settle(0.2)  # the CLI is up now
    assert fleet.current.sent == []  # q1 never reached it
    assert [r["subtype"] for r in sink.results("q1")] == ["cancelled"] and s.state == "idle"


async def test_a_soft_reset_of_a_turn_that_ignores_the_interrupt_replaces_the_cli(
    session: Any, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `/clear` would queue behind the turn and its result be taken for the turn's: no `/clear` then."""
    monkeypatch.setattr("gateway.sessions.session.CONTROL_TIMEOUT_S", 0.1)
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    first = fleet.current
    fleet.deaf = True
    await s.execute(ResetConversation(id="r1", mode="soft"), ALICE)
    assert not first.alive and first.sent[-1]["message"]["content"] == "hi"  # no `/clear` went to it
    assert [r["subtype"] for r in sink.results("q1")] == ["cancelled"]
    assert s.claude_session_id is None and s.state == "idle"


async def test_a_close_ends_a_reset_waiting_on_the_turn(session: Any, fleet: Fleet) -> None:
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    fleet.deaf = True
    reset = asyncio.create_task(s.execute(ResetConversation(id="r1", mode="soft"), ALICE))
    await settle()
    await s.close("closed by client")
    async with asyncio.timeout(1):  # not the 15 s control timeout
        await reset
    assert sink.states()[-1] == "closed"


async def test_an_answer_racing_the_clis_cancellation_is_already_resolved(session: Any, fleet: Fleet) -> None:
    """The CLI cancels a permission request (interrupt) in the same loop turn as a tab answers it."""
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    ctx = ToolPermissionContext(signal=None, suggestions=[], tool_use_id="t1")
    asking = asyncio.create_task(s.can_use_tool("Bash", {"command": "ls"}, ctx))  # the SDK's handler task
    await settle()
    [request_id] = [e["request_id"] for e in sink.events if e["kind"] == "permission_request"]
    answer = asyncio.create_task(s.execute(PermissionResponse(id="a1", request_id=request_id, decision="allow"), ALICE))
    await asyncio.sleep(0)  # the answer's task is queued to run ...
    asking.cancel()  # ... and the CLI's cancellation arrives first
    with pytest.raises(GatewayError) as refused:
        await answer
    assert refused.value.code == ErrorCode.REQUEST_ALREADY_RESOLVED
    await asyncio.gather(asking, return_exceptions=True)
    resolved = [e for e in sink.events if e["kind"] == "request_resolved"]
    assert [e["outcome"] for e in resolved] == ["cancelled"] and s.state == "running"


async def test_the_clis_own_turns_end_no_query_and_are_no_clear(session: Any, fleet: Fleet) -> None:
    """Turns the CLI starts itself (origin task-notification) end neither the running query nor a reset's `/clear`."""
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    uuid = fleet.current.sent[-1]["uuid"]
    fleet.current.result(origin={"kind": "task-notification"})
    assert sink.results("q1") == [] and s.state == "running"
    fleet.current.result(origin={"kind": "task-notification"}, user_message_uuids=[uuid])  # it took q1 in
    assert [r["subtype"] for r in sink.results("q1")] == ["success"] and s.state == "idle"
    # A reset's `/clear` waits for its own result, not one of the CLI's turns.
    reset = asyncio.create_task(s.execute(ResetConversation(id="r1", mode="soft"), ALICE))
    await settle()
    fleet.current.result(origin={"kind": "task-notification"})
    await settle()
    assert not reset.done()
    fleet.current.result()  # the `/clear`'s
    await reset
    assert [e.get("query_id", "-") for e in sink.events if e["kind"] == "result"] == [None, "q1", None]
    assert sink.events[-2]["kind"] == "conversation_reset" and s.state == "idle"


async def test_a_second_close_waits_for_the_first(session: Any, fleet: Fleet) -> None:
    """Shutdown while a tab's close still stops the CLI: it returns only once that CLI is stopped."""
    s, sink = session
    fleet.stop_delay = 0.2
    await s.execute(Close(id="c1"), ALICE)  # acked at once; the close runs on
    await settle()
    assert s.closed and fleet.current.alive
    await s.close("shutdown")
    assert not fleet.current.alive
    assert sink.states()[-1] == "closed" and sink.events[-1]["reason"] == "closed by client"


async def test_a_turn_whose_cli_acks_the_interrupt_but_never_ends_is_abandoned(
    session: Any, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interrupt is acked, yet the turn never ends (a wedged CLI): within the bound the query ends
    `agent_unresponsive`, the CLI is replaced, and the next query runs on a new one."""
    monkeypatch.setattr("gateway.sessions.session.CONTROL_TIMEOUT_S", 0.2)
    monkeypatch.setattr("gateway.sessions.session.GUARD_TICK_S", 0.05)
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    stuck = fleet.current
    fleet.deaf = True
    ack = await s.execute(Interrupt(id="i1"), ALICE)
    assert ack.result == {"interrupted": True} and s.state == "interrupted"
    await settle(0.5)
    assert [r["subtype"] for r in sink.results("q1")] == ["agent_unresponsive"]
    assert s.state == "idle" and not stuck.alive
    assert sink.states()[-2:] == ["interrupted", "idle"]
    fleet.deaf = False
    await s.execute(Query(id="q2", prompt="again"), ALICE)
    await settle()
    assert fleet.current is not stuck and fleet.current.sent[-1]["message"]["content"] == "again"
    fleet.current.result()
    assert [r["subtype"] for r in sink.results("q2")] == ["success"]


async def test_the_watchdog_ends_a_silent_turn_but_not_one_waiting_on_an_approval(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.sessions.session.GUARD_TICK_S", 0.05)
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    s = Session(session_id="s2", principal="alice", spec=spec, log_store=MemoryEventLog(10_000, 1 << 26, 3600), runner_factory=fleet, limits=session_limits(Settings()), turn_watchdog_s=0.3)
    sink = Sink()
    s.feed.subscribe(sink)
    s.start()
    await settle()
    try:
        await s.execute(Query(id="q1", prompt="hi"), ALICE)
        for _ in range(8):  # output keeps the turn alive past the watchdog
            await settle(0.1)
            fleet.current.stream()
        ctx = ToolPermissionContext(signal=None, suggestions=[], tool_use_id="t1")
        asking = asyncio.create_task(s.can_use_tool("Bash", {"command": "ls"}, ctx))
        await settle(0.8)  # a human's turn is not silence
        assert s.state == "awaiting_approval" and not sink.results("q1")
        [pending] = s.approvals.events()
        await s.execute(PermissionResponse(id="p1", request_id=pending.request_id, decision="allow"), ALICE)
        await asking
        await settle(0.6)  # then nothing more: abandoned
        assert [r["subtype"] for r in sink.results("q1")] == ["agent_unresponsive"]
        assert s.state == "idle" and not fleet.runners[0].alive
    finally:
        await s.close("test over")


async def test_a_conversation_its_cli_never_saved_starts_afresh_instead_of_failing(session: Any, fleet: Fleet) -> None:
    """A CLI that dies in the conversation's first turn may not have saved it: resuming it would
    fail on every query ("No conversation found"), so the next CLI starts a new conversation."""
    s, sink = session
    first = await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    s.claude_session_id = "never-saved"  # as the CLI's `init` message names it at the turn's start
    fleet.current.die()
    await settle()
    assert [r["subtype"] for r in sink.results("q1")] == ["agent_exited"] and first.result
    await s.execute(Query(id="q2", prompt="again"), ALICE)
    await settle()
    assert fleet.current.alive and fleet.current.claude_session_id is None
    assert len(fleet.runners) == 3  # the refused resume, then a fresh start
    fleet.current.result(user_message_uuid=fleet.current.sent[-1]["uuid"])
    await settle()
    assert [r["is_error"] for r in sink.results("q2")] == [False]


class Acks:
    """An ack store (Redis in a cluster) that keeps what the session records."""

    def __init__(self) -> None:
        self.put_ids: list[str] = []

    async def get(self, frame_id: str) -> None:
        return None

    def put(self, ack: Any) -> None:
        self.put_ids.append(ack.id)


async def test_a_query_that_finds_the_lease_lapsed_is_refused_not_acked(fleet: Fleet) -> None:
    """Its `user_query` can't be written (another replica may run the session by now), so an ack would
    promise a query no replica runs: the client is told to send it again, to the next owner."""
    fresh, acks, lapsed = [True], Acks(), []
    s = Session(
        session_id="s1", principal="alice", spec=narrow(DEMO_PROFILE, Open(id="o")), log_store=MemoryEventLog(10_000, 1 << 26, 3600),
        runner_factory=fleet, limits=session_limits(Settings()), ack_store=acks, lease=lambda: fresh[0], on_lease_lapsed=lambda: lapsed.append(1),
    )
    sink = Sink()
    s.feed.subscribe(sink)
    s.start()
    await settle()
    fresh[0] = False  # this replica's renewals stopped coming through
    with pytest.raises(GatewayError) as refused:
        await s.execute(Query(id="q1", prompt="hello"), ALICE)
    assert refused.value.code == ErrorCode.OWNER_UNREACHABLE
    assert acks.put_ids == [] and lapsed  # and the manager was told to let the session go
    assert not [e for e in sink.events if e["kind"] == "user_query"]
    await s.close("test over")


class FencedLog(MemoryEventLog):
    """A shared log that another replica's claim fenced off: nothing appended is ever written."""

    deferred = True

    @property
    def committed_seq(self) -> int:
        return 0

    async def committed(self, seq: int) -> None:
        """Returns as a fenced log's waiters do: woken, with nothing written."""


async def test_a_frame_whose_events_were_fenced_off_is_refused_not_acked(fleet: Fleet) -> None:
    """The lease still looked held when the query ran, but its `user_query` was never written (the
    log was fenced off meanwhile): no ack and no ack record, or the copy the client re-sends to the
    new owner would get that record back and never run."""
    acks = Acks()
    s = Session(
        session_id="s1", principal="alice", spec=narrow(DEMO_PROFILE, Open(id="o")), log_store=FencedLog(10_000, 1 << 26, 3600),
        runner_factory=fleet, limits=session_limits(Settings()), ack_store=acks,
    )
    s.start()
    await settle()
    with pytest.raises(GatewayError) as refused:
        await s.execute(Query(id="q1", prompt="hello"), ALICE)
    assert refused.value.code == ErrorCode.OWNER_UNREACHABLE
    assert acks.put_ids == []
    await s.close("test over")
