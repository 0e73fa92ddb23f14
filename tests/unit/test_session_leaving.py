"""A session that left this replica (or closed) while frames still waited on it: nothing it does
afterwards may start a CLI, write to the cluster, or reach its clients. Fake runners set the timing."""

import asyncio
from typing import Any

import pytest

from gateway.config import Settings
from gateway.events.log import MemoryEventLog
from gateway.profiles import DEMO_PROFILE, narrow
from gateway.sessions.manager import session_limits
from gateway.sessions.pool import Warm
from gateway.sessions.session import Session
from gateway.wire.client import Compact, Interrupt, Open, Query, ResetConversation
from gateway.wire.errors import ErrorCode, GatewayError
from tests.unit.test_session_races import ALICE, FakeRunner, Fleet, fleet, session, settle  # noqa: F401 (fixtures)


async def test_a_reset_waiting_on_a_deaf_turn_starts_no_cli_once_the_session_left(session: Any, fleet: Fleet) -> None:
    """The session is handed over (or fenced) while a hard reset waits for a turn that ignores the
    interrupt: the reset stops waiting, is refused (it runs at the next owner), and no CLI starts here."""
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    fleet.deaf = True
    reset = asyncio.create_task(s.execute(ResetConversation(id="r1", mode="hard"), ALICE))
    await settle()
    await s.leave()
    with pytest.raises(GatewayError) as refused:
        async with asyncio.timeout(1):  # not the 15 s control timeout
            await reset
    assert refused.value.code == ErrorCode.OWNER_UNREACHABLE
    await settle()
    assert len(fleet.runners) == 1 and not fleet.current.alive and s._runner is None
    with pytest.raises(GatewayError):  # a control frame that waited on the CLI's lock starts none either
        await s._ensure_runner()
    assert len(fleet.runners) == 1


async def test_a_reset_waiting_on_a_cli_start_is_refused_once_the_session_left(session: Any, fleet: Fleet) -> None:
    s, _ = session
    fleet.current.die()
    fleet.start_delay = 0.2
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()  # the pump starts a CLI for q1
    reset = asyncio.create_task(s.execute(ResetConversation(id="r1", mode="hard"), ALICE))
    await settle()
    await s.leave()
    with pytest.raises(GatewayError) as refused:
        await reset
    assert refused.value.code == ErrorCode.OWNER_UNREACHABLE
    assert not any(r.alive for r in fleet.runners)


class SlowToNarrow(FakeRunner):
    """A pooled CLI: adopted by a session, then told its model (which takes a while)."""

    async def set_model(self, model: str | None) -> None:
        await asyncio.sleep(0.5)


async def test_a_pooled_cli_being_narrowed_stops_when_the_session_closes(fleet: Fleet) -> None:
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    pooled = SlowToNarrow(None, fleet)  # type: ignore[arg-type]
    await pooled.start()
    warm = Warm("s1", pooled, spec.profile.name, "another-model", spec.permission_mode)  # type: ignore[arg-type]
    s = Session(session_id="s1", principal="alice", spec=spec, log_store=MemoryEventLog(10_000, 1 << 26, 3600), runner_factory=fleet,
                limits=session_limits(Settings()), warm=warm)
    s.start()
    await settle()  # narrowing it to the session's model
    await s.close("closed by client")
    assert not pooled.alive and fleet.runners == []


async def test_a_query_the_lost_owner_logged_is_not_run_again_when_re_sent(session: Any, fleet: Fleet) -> None:
    """The ack record is written after the ack: a query re-sent to the replica that adopted the session
    finds its `user_query` in the log instead, and is acked as the duplicate it is."""
    lost, _ = session
    await lost.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    frames = await lost.feed.log.read_after(0)
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    adopted = Session(session_id="s1", principal="alice", spec=spec, log_store=MemoryEventLog(10_000, 1 << 26, 3600), runner_factory=fleet,
                      limits=session_limits(Settings()))
    adopted.recover(frames, lost.info(), "cs", "owner_lost", 0)
    adopted.start()
    await settle()
    try:
        ack = await adopted.execute(Query(id="q1", prompt="hi"), ALICE)
        await settle()
        assert ack.duplicate and ack.result["query_id"] == "q1"  # type: ignore[index]
        assert fleet.current.sent == [] and adopted.state == "idle"
    finally:
        await adopted.close("test over")


async def test_a_late_result_from_an_abandoned_cli_ends_no_query(session: Any, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The turn's CLI ignored the interrupt and was replaced; its `result`, arriving while it stops,
    is neither a result without a query nor the end of the next query."""
    monkeypatch.setattr("gateway.sessions.session.CONTROL_TIMEOUT_S", 0.1)
    monkeypatch.setattr("gateway.sessions.session.GUARD_TICK_S", 0.05)
    s, sink = session
    await s.execute(Query(id="q1", prompt="hi"), ALICE)
    await settle()
    stuck = fleet.current
    fleet.deaf = True
    await s.execute(Interrupt(id="i1"), ALICE)  # acked, never honoured: the turn is abandoned, its CLI stopped
    await settle(0.4)
    assert [r["subtype"] for r in sink.results("q1")] == ["agent_unresponsive"]
    fleet.deaf = False
    await s.execute(Query(id="q2", prompt="again"), ALICE)
    await settle()
    assert fleet.current is not stuck
    stuck.result()
    assert [e.get("query_id") for e in sink.events if e["kind"] == "result"] == ["q1"] and s.state == "running"
    fleet.current.result()
    assert [r["subtype"] for r in sink.results("q2")] == ["success"]


async def test_a_command_queued_at_a_handover_runs_as_a_command_at_the_next_owner(session: Any, fleet: Fleet) -> None:
    left, _ = session
    await left.execute(Query(id="q1", prompt="hi"), ALICE)
    await left.execute(Compact(id="c1"), ALICE)  # queued behind q1
    await left.execute(Query(id="q2", prompt="/compact"), ALICE)  # a client's text, whatever it looks like
    await settle()
    frames = await left.feed.log.read_after(0)
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    adopted = Session(session_id="s1", principal="alice", spec=spec, log_store=MemoryEventLog(10_000, 1 << 26, 3600), runner_factory=fleet,
                      limits=session_limits(Settings()))
    adopted.recover(frames, left.info(), "cs", "handover", 0)
    adopted.start()
    try:
        await settle()
        fleet.current.result()  # the compact's turn
        await settle()
        compact, text = fleet.current.sent
        assert compact["message"]["content"] == "/compact" and "client_composed" not in compact
        assert text["message"]["content"] == "/compact" and text["client_composed"] is True
    finally:
        await adopted.close("test over")
