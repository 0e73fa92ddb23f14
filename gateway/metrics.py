"""Prometheus metrics of one gateway app, in a registry of its own (several apps in one process don't collide).

Invariants: nothing here runs per event, and no label carries a session id, principal or token.
What grows per event (events emitted), or is a property of the sessions (how many are in each state,
approvals pending) is read off the sessions when scraped. What the transports count per send (frames
per message, bytes) is plain integer arithmetic, exported at scrape: a `prometheus_client` histogram
observation takes three locks (1.3 µs), which a paced stream would pay per event. Per-turn and
per-session timings, a few per turn, use ordinary `prometheus_client` histograms. Label values come
from the fixed sets below, and every labelled child is bound once, here.

Everything runs on the app's event loop, scrapes included, so the plain counters need no lock.
"""

import bisect
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal, Protocol

from claude_agent_sdk.types import PermissionResultAllow
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.sessions.approvals import EXPIRED_MESSAGE, QUESTION_TOOL, PermissionResult
from gateway.wire.events import SessionState

if typing.TYPE_CHECKING:
    from gateway.sessions.admission import Capacity

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Transport = Literal["ws", "sse"]
TRANSPORTS: tuple[Transport, ...] = typing.get_args(Transport)
STATES: tuple[SessionState, ...] = typing.get_args(SessionState)
APPROVAL_KINDS = ("permission", "question")
APPROVAL_OUTCOMES = ("allowed", "denied", "expired", "cancelled")
SEND_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # frames per message (the outbox sends at most 512)
REPLAY_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # CLI start, open to idle
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
ANSWER_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class SessionLike(Protocol):
    """What a scrape reads of a session."""

    state: SessionState

    @property
    def feed(self) -> Any: ...

    @property
    def approvals(self) -> Any: ...


class Tally:
    """A histogram of small integers kept as plain counts (what `Histogram.observe` does, without locks)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0

    def observe(self, value: int) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets as `HistogramMetricFamily` takes them."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            running += count
            out.append((bound, running))
        return out


class TransportMetrics:
    """One transport's counts (ws or sse), updated per send, attach and disconnect."""

    __slots__ = ("bytes_sent", "open", "per_send", "replays", "resets", "slow_consumers")

    def __init__(self) -> None:
        self.per_send = Tally(SEND_BUCKETS)
        self.bytes_sent = 0
        self.replays = Tally(REPLAY_BUCKETS)
        self.resets = 0
        self.slow_consumers = 0
        self.open = 0

    def sent(self, frames: int, size: int) -> None:
        self.per_send.observe(frames)
        self.bytes_sent += size

    def attached(self, replayed: int | None) -> None:
        """An attach answered with a replay of `replayed` frames, or (None) with a snapshot."""
        if replayed is None:
            self.resets += 1
        else:
            self.replays.observe(replayed)


class GatewayMetrics:
    def __init__(self, sessions: Callable[[], Iterable[SessionLike]] = tuple, capacity: "Capacity | None" = None) -> None:
        self.registry = CollectorRegistry()
        self._sessions = sessions
        self._capacity = capacity
        self._forgotten_events = 0  # events of sessions no longer held, so the total never goes down
        self.opened = 0
        self.transports: dict[Transport, TransportMetrics] = {t: TransportMetrics() for t in TRANSPORTS}
        self.ws, self.sse = self.transports["ws"], self.transports["sse"]
        reg = self.registry
        self.cli_start = Histogram("gateway_cli_start_seconds", "Time to start a session's CLI (connect and initialize).", buckets=SLOW_BUCKETS, registry=reg)
        self.ready = Histogram("gateway_session_ready_seconds", "Open to the session's first idle (its CLI is up).", buckets=SLOW_BUCKETS, registry=reg)
        self.first_token = Histogram(
            "gateway_first_token_seconds", "A query handed to the CLI to its first streamed text delta.", buckets=TURN_BUCKETS, registry=reg
        )
        self.turn = Histogram("gateway_turn_seconds", "A query handed to the CLI to the turn's result.", buckets=TURN_BUCKETS, registry=reg)
        answer = Histogram(
            "gateway_approval_seconds", "A permission request or question raised to its outcome.",
            ["kind", "outcome"], buckets=ANSWER_BUCKETS, registry=reg,
        )
        self.answer = {(k, o): answer.labels(k, o) for k in APPROVAL_KINDS for o in APPROVAL_OUTCOMES}
        reg.register(_Scraped(self))

    def session(self) -> "SessionMetrics":
        self.opened += 1
        return SessionMetrics(self)

    def forget(self, session: SessionLike) -> None:
        """A session leaves the process for good: keep its events in the total."""
        self._forgotten_events += session.feed.last_seq

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def scrape(self) -> Iterator[Any]:
        sessions = list(self._sessions())
        by_state = dict.fromkeys(STATES, 0)
        events = self._forgotten_events
        pending = 0
        for session in sessions:
            by_state[session.state] += 1
            events += session.feed.last_seq
            pending += len(session.approvals)
        states = GaugeMetricFamily("gateway_sessions", "Sessions held, by state (closed ones until their retention ends).", labels=["state"])
        for state, count in by_state.items():
            states.add_metric([state], count)
        yield states
        yield CounterMetricFamily("gateway_sessions_opened", "Sessions opened.", value=self.opened)
        yield CounterMetricFamily("gateway_events", "Events emitted by sessions (numbered and logged).", value=events)
        yield GaugeMetricFamily("gateway_approvals_pending", "Permission requests and questions waiting for an answer.", value=pending)
        if self._capacity is not None:
            capacity = self._capacity
            yield GaugeMetricFamily("gateway_clis_live", "Sessions holding a CLI slot (running, starting or promised).", value=capacity.live())
            yield CounterMetricFamily("gateway_hibernations", "Sessions hibernated (idle, or to make room).", value=capacity.hibernations)
            yield GaugeMetricFamily("gateway_pool_ready", "Warm-pool CLIs started and waiting for a session.", value=len(capacity.spare) if capacity.spare is not None else 0)
            refusals = CounterMetricFamily(
                "gateway_capacity_refusals", "Opens and wake-ups refused with `at_capacity`, by the limit hit.", labels=["limit"]
            )
            for limit, count in capacity.refusals.items():
                refusals.add_metric([limit], count)
            yield refusals
        families = {
            "open": GaugeMetricFamily("gateway_connections_open", "WebSockets and SSE streams open.", labels=["transport"]),
            "per_send": HistogramMetricFamily(
                "gateway_frames_per_send", "Frames per WebSocket message or SSE write (coalescing).", labels=["transport"]
            ),
            "bytes": CounterMetricFamily("gateway_sent_bytes", "Frame bytes sent (WebSocket payloads, SSE messages).", labels=["transport"]),
            "slow": CounterMetricFamily(
                "gateway_slow_consumer_disconnects", "Connections dropped for falling behind (WebSocket close 4008).", labels=["transport"]
            ),
            "replays": HistogramMetricFamily("gateway_replay_frames", "Frames replayed on attach or resume.", labels=["transport"]),
            "resets": CounterMetricFamily("gateway_attach_resets", "Attaches answered with a snapshot (`reset`) instead of a replay.", labels=["transport"]),
        }
        for name, t in self.transports.items():
            families["open"].add_metric([name], t.open)
            families["per_send"].add_metric([name], t.per_send.buckets(), t.per_send.total)
            families["bytes"].add_metric([name], t.bytes_sent)
            families["slow"].add_metric([name], t.slow_consumers)
            families["replays"].add_metric([name], t.replays.buckets(), t.replays.total)
            families["resets"].add_metric([name], t.resets)
        yield from families.values()


class _Scraped(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics.scrape()


class SessionMetrics:
    """One session's timings. The session calls it at a few points of a turn; `awaiting_token` is
    the one thing it reads per text delta (a plain attribute)."""

    __slots__ = ("_m", "_opened", "_turn", "awaiting_token")

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        self._opened: float | None = time.monotonic()  # None once the session was first ready
        self._turn: float | None = None
        self.awaiting_token = False

    async def cli_start(self, start: Awaitable[None]) -> None:
        """Await a runner's start and time it (failed starts are not observed)."""
        began = time.monotonic()
        await start
        self._m.cli_start.observe(time.monotonic() - began)

    def state_changed(self, state: SessionState) -> None:
        if state == "idle" and self._opened is not None:
            self._m.ready.observe(time.monotonic() - self._opened)
            self._opened = None

    def turn_started(self) -> None:
        self._turn = time.monotonic()
        self.awaiting_token = True

    def first_token(self) -> None:
        self.awaiting_token = False
        if self._turn is not None:
            self._m.first_token.observe(time.monotonic() - self._turn)

    def turn_ended(self) -> None:
        """The CLI's result for the running query (turns ended by the gateway are not timed)."""
        self.awaiting_token = False
        if self._turn is not None:
            self._m.turn.observe(time.monotonic() - self._turn)
            self._turn = None

    async def approval(self, tool_name: str, answer: Awaitable[PermissionResult]) -> PermissionResult:
        """Await an approval's outcome and time it from when it was raised."""
        kind = "question" if tool_name == QUESTION_TOOL else "permission"
        began = time.monotonic()
        outcome = "cancelled"
        try:
            result = await answer
            if isinstance(result, PermissionResultAllow):
                outcome = "allowed"
            else:
                outcome = "expired" if result.message == EXPIRED_MESSAGE else "denied"
            return result
        finally:
            self._m.answer[kind, outcome].observe(time.monotonic() - began)
