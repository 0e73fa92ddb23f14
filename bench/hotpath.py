"""The gateway's own work per event, without sockets: one real session and one attached Outbox, in process.

Three figures, best of several rounds (noise only ever adds time): building the synthetic agent's SDK
messages, `Session.on_message` up to the frame sitting in the Outbox (translate, number, encode once,
log, push), and the sender's `Outbox.take` plus joining the batch into one text message. What remains
of a gateway's cost per event (uvicorn, WebSocket framing, the send syscall, event-loop turns) shows
only end to end, in the run's ev/cpu-s column.
"""

import asyncio
import time
from dataclasses import dataclass

from bench.synthetic_agent import Burst, SyntheticAgent, reply
from gateway.config import Settings
from gateway.events.log import MemoryEventLog
from gateway.profiles import DEMO_PROFILE, narrow
from gateway.sessions.manager import session_limits
from gateway.sessions.session import Session
from gateway.transports.outbox import Outbox
from gateway.wire.client import Open


@dataclass(frozen=True)
class HotPath:
    agent_us: float  # building one SDK message (the synthetic agent, standing in for the SDK)
    emit_us: float  # Session.on_message -> encoded frame in the Outbox
    take_us: float  # per event: Outbox.take and b"\n".join(batch).decode(), in batches of `batch`
    batch: int


async def _measure(events: int, batch: int, rounds: int) -> HotPath:
    settings = Settings()
    session = Session(
        session_id="s_hotpath",
        principal="bench",
        spec=narrow(DEMO_PROFILE, Open(id="o")),
        log_store=MemoryEventLog(settings.log_max_events, settings.log_max_bytes, settings.log_max_age_s),
        runner_factory=SyntheticAgent,
        limits=session_limits(settings),
    )
    session.start()
    while session.state == "starting":  # the session's pump starts the (synthetic) agent
        await asyncio.sleep(0)
    outbox = Outbox(settings.send_queue_bytes)
    await session.attach(outbox, "bench", "bench", 0, None)
    burst = Burst(events=events)
    agent = emit = take = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        messages = [m for m in reply(burst, "hotpath-session-000000000000") if m.__class__ is not float]
        agent = min(agent, (time.perf_counter() - started) / len(messages))
        emit_s = take_s = 0.0
        for first in range(0, len(messages), batch):
            started = time.perf_counter()
            for message in messages[first : first + batch]:
                session.on_message(message)
            emit_s += time.perf_counter() - started
            started = time.perf_counter()
            b"\n".join(await outbox.take()).decode()
            take_s += time.perf_counter() - started
        emit, take = min(emit, emit_s / len(messages)), min(take, take_s / len(messages))
    await session.close("done")
    return HotPath(agent * 1e6, emit * 1e6, take * 1e6, batch)


def measure(events: int = 20_000, batch: int = 64, rounds: int = 5) -> HotPath:
    return asyncio.run(_measure(events, batch, rounds))
