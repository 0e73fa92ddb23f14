"""A session that left this replica (or closed) while frames still waited on it: nothing it does
afterwards may start a CLI, write to the cluster, or reach its clients. Fake runners set the timing."""

import asyncio
from typing import Any

import pytest

from gateway.wire.client import Query, ResetConversation
from gateway.wire.errors import ErrorCode, GatewayError
from tests.unit.test_session_races import ALICE, Fleet, fleet, session, settle  # noqa: F401 (fixtures)


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
