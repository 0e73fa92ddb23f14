"""The HTTP API under `/v1`: sessions, frames, snapshots, run-and-poll, profiles, tickets, health.

Every endpoint is a thin call into the session core, as the WebSocket transport is. `OPERATIONS`
is the one list of endpoints: the routes, `/openapi.json` and the error statuses come from it.
"""

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.sessions import checks
from gateway.sessions.runs import latest_run, run_view
from gateway.transports import http_common, sse
from gateway.transports.problems import error_problem, problem
from gateway.wire import client as cf
from gateway.wire import http as ht
from gateway.wire.codec import decode_client_frame
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.server import Ack, SessionInfo, Snapshot

_encode = msgspec.json.Encoder().encode
MAX_IDLE_S = 1e9
_OPEN_OPTIONS = [f for f in cf.Open.__struct_fields__ if f != "id"]
E = ErrorCode


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(body), status, headers, media_type="application/json")


def cursor_header(info: SessionInfo) -> dict[str, str]:
    """`Last-Event-ID` naming the position a body reflects: open the event stream from there."""
    return {"Last-Event-ID": sse.event_id(info.epoch, info.last_seq)}


# ---- sessions ----------------------------------------------------------------------------------


async def create_session(request: Request) -> Response:
    caller = http_common.principal(request)
    actor = http_common.actor(request, caller)
    body = await http_common.decode(request, ht.CreateSession, empty=b"{}")
    frame = cf.Open(id=body.id or "http_" + secrets.token_urlsafe(12), **{f: getattr(body, f) for f in _OPEN_OPTIONS})
    session = await http_common.manager(request).open(caller, frame)
    if body.prompt is not None:
        await session.execute(cf.Query(id="run_" + frame.id, prompt=body.prompt), actor)
    snapshot = await session.snapshot()
    headers = {"Location": f"/v1/sessions/{session.id}", **cursor_header(snapshot.session)}
    return reply(ht.SessionStatus(session=snapshot.session, run=latest_run(snapshot)), 201, headers)


async def list_sessions(request: Request) -> Response:
    caller = http_common.principal(request)
    return reply(ht.SessionList(await http_common.manager(request).list_infos(caller)))


async def close_idle_sessions(request: Request) -> Response:
    caller = http_common.principal(request)
    raw = request.query_params.get("idle_for_s", "")
    try:
        idle_for_s = float(raw)
    except ValueError:
        idle_for_s = -1.0
    if not 0 <= idle_for_s <= MAX_IDLE_S:
        raise GatewayError(E.BAD_FRAME, "idle_for_s is a number of seconds, 0 or more")
    return reply(ht.ClosedSessions(await http_common.manager(request).close_idle(caller, idle_for_s)))


async def get_session(request: Request) -> Response:
    """Status and the latest run: all a run-and-poll client needs to follow one prompt."""
    _, session = await http_common.session(request)
    snapshot = await session.snapshot()
    return reply(ht.SessionStatus(session=snapshot.session, run=latest_run(snapshot)), headers=cursor_header(snapshot.session))


async def delete_session(request: Request) -> Response:
    _, session = await http_common.session(request)
    await http_common.manager(request).close(session, "closed by client")
    return reply(session.info())


async def fork_session(request: Request) -> Response:
    """The `fork` frame over HTTP: run by the session's owner, whichever replica that is."""
    caller, session = await http_common.session(request)
    body = await http_common.decode(request, ht.ForkSession, empty=b"{}")
    frame = cf.Fork(id="fork_" + secrets.token_hex(8), query_id=body.query_id)
    ack = await session.execute(frame, http_common.actor(request, caller))
    assert ack.result is not None
    forked = await http_common.manager(request).get(caller, ack.result["session_id"])
    snapshot = await forked.snapshot()
    info = snapshot.session
    return reply(ht.SessionStatus(session=info, run=latest_run(snapshot)), 201, {"Location": f"/v1/sessions/{forked.id}", **cursor_header(info)})


async def get_snapshot(request: Request) -> Response:
    _, session = await http_common.session(request)
    snapshot = await session.snapshot()
    return reply(snapshot, headers=cursor_header(snapshot.session))


async def post_frame(request: Request) -> Response:
    """The WebSocket's session frames, one per request; the reply is the ack the socket would get."""
    caller, session = await http_common.session(request)
    actor = http_common.actor(request, caller)
    frame = decode_client_frame(await http_common.body(request))
    try:
        ack = await session.execute(frame, actor)
    except GatewayError as exc:
        return error_problem(exc, frame.id)
    return reply(ack)


# ---- run-and-poll ------------------------------------------------------------------------------


async def get_run(request: Request) -> Response:
    _, session = await http_common.session(request)
    return reply(run_view(await session.snapshot(), request.path_params["run_id"]))


async def cancel_run(request: Request) -> Response:
    _, session = await http_common.session(request)
    run_id = request.path_params["run_id"]
    run_view(await session.snapshot(), run_id)  # unknown runs are 404 before anything is cancelled
    await session.cancel_query(run_id)
    return reply(run_view(await session.snapshot(), run_id))


# ---- profiles ----------------------------------------------------------------------------------


async def list_profiles(request: Request) -> Response:
    http_common.principal(request)
    profiles = http_common.manager(request).profiles.values()
    return reply(ht.ProfileList([ht.profile_view(p) for p in profiles]))


async def check_profile(request: Request) -> Response:
    """One check at a time per process: each starts a CLI."""
    http_common.principal(request)
    async with request.app.state.check_lock:
        return reply(await http_common.manager(request).check_profile(request.path_params["name"]))


# ---- tickets and health ------------------------------------------------------------------------


async def issue_ticket(request: Request) -> Response:
    caller = http_common.principal(request, tickets=False)
    ticket, expires = request.app.state.auth.issue_ticket(caller)
    return reply(ht.Ticket(ticket, expires))


async def healthz(request: Request) -> Response:
    return reply(ht.Health("ok", demo=request.app.state.settings.demo == "on"))


async def readyz(request: Request) -> Response:
    """Ready when the CLI runs here, its sandbox is available and, when configured, Redis answers
    (sessions would fail otherwise), and the replica is not shutting down. The checks run side by
    side, so the answer takes the slowest one."""
    settings, cluster = request.app.state.settings, http_common.manager(request).cluster
    pending = [checks.cli_runnable(settings), asyncio.to_thread(checks.sandbox_available, settings)]
    if cluster is not None:
        pending.append(checks.redis_reachable(cluster.redis, settings))
    results = list(await asyncio.gather(*pending))
    if http_common.manager(request).shutting_down:  # first thing on SIGTERM, so the balancer drains this replica
        results.append(ht.ReadinessCheck(name="draining", ok=False, detail="this replica is shutting down and takes no new sessions"))
    ready = all(c.ok for c in results)
    return reply(ht.Readiness(status="ready" if ready else "unready", checks=results), 200 if ready else 503)


# ---- the operation table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One endpoint, as routed and as documented; `errors` are the problem codes it can answer with."""

    method: str
    path: str
    endpoint: Callable[[Request], Awaitable[Response]]
    summary: str
    reply: Any = None
    status: int = 200
    body: Any = None
    errors: tuple[ErrorCode, ...] = ()
    params: tuple[Param, ...] = ()
    auth: bool = True
    stream: bool = False
    other_replies: tuple[tuple[int, Any], ...] = ()
    headers: tuple[str, ...] = ()


_ID = {"type": "string", "minLength": 1, "maxLength": 200}
SESSION_ID = Param("session_id", "path", "A session id (`s_…`).", _ID, True)
RUN_ID = Param("run_id", "path", "A run id: the id of the query that started the run.", _ID, True)
CONNECTION_ID = Param(
    "X-Connection-Id", "header", "Tie this request to a connection (e.g. your SSE stream's `X-Connection-Id`); events show it as `by.connection`.",
    {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
)
_CURSOR = {"type": "string", "pattern": "^(([^:]*:)?[0-9]{1,18})?$", "maxLength": 200}
_BAD_BODY = (E.BAD_JSON, E.BAD_FRAME, E.FRAME_TOO_LARGE)
_SESSION = (E.UNAUTHORIZED, E.SESSION_NOT_FOUND, E.OWNER_UNREACHABLE)
_OPEN = (E.PROFILE_NOT_FOUND, E.FORBIDDEN_OPTION, E.MODEL_NOT_ALLOWED, E.MODE_NOT_ALLOWED, E.TOO_MANY_SESSIONS, E.AT_CAPACITY, E.AGENT_UNAVAILABLE)
_FORK = (E.SESSION_CLOSED, E.UNKNOWN_QUERY, E.TOO_MANY_SESSIONS, E.AT_CAPACITY, E.AGENT_UNAVAILABLE, E.AGENT_ERROR)
_FRAME = (
    E.UNKNOWN_TYPE, E.SESSION_CLOSED, E.MODEL_NOT_ALLOWED, E.MODE_NOT_ALLOWED, E.UNKNOWN_REQUEST,
    E.REQUEST_ALREADY_RESOLVED, E.INVALID_ANSWER, E.QUEUE_FULL, E.AGENT_ERROR,
    E.SUGGESTION_NOT_ALLOWED, E.FORBIDDEN_OPTION, E.UNKNOWN_TASK, E.UNKNOWN_QUERY, E.UNKNOWN_MCP_SERVER, E.AGENT_UNAVAILABLE, E.TOO_MANY_SESSIONS,
    E.AT_CAPACITY,
)

OPERATIONS = (
    Operation("POST", "/v1/sessions", create_session, "Create a session; with `prompt`, also start a run (run-and-poll).",
              ht.SessionStatus, 201, ht.CreateSession, (E.UNAUTHORIZED, *_BAD_BODY, *_OPEN, E.QUEUE_FULL), (CONNECTION_ID,),
              headers=("Location", "Last-Event-ID")),
    Operation("GET", "/v1/sessions", list_sessions, "The caller's sessions, closed ones included while they are retained.",
              ht.SessionList, errors=(E.UNAUTHORIZED,)),
    Operation("DELETE", "/v1/sessions", close_idle_sessions, "Close the caller's sessions idle for at least `idle_for_s` seconds (not those running a turn).",
              ht.ClosedSessions, errors=(E.UNAUTHORIZED, E.BAD_FRAME),
              params=(Param("idle_for_s", "query", "Minimum idle time in seconds.", {"type": "number", "minimum": 0, "maximum": MAX_IDLE_S}, True),)),
    Operation("GET", "/v1/sessions/{session_id}", get_session, "A session's status and its latest run (poll this after creating a session with a prompt).",
              ht.SessionStatus, errors=_SESSION, params=(SESSION_ID,),
              headers=("Last-Event-ID",)),
    Operation("DELETE", "/v1/sessions/{session_id}", delete_session, "Close a session (idempotent); its streams end after the `closed` state event.",
              SessionInfo, errors=_SESSION, params=(SESSION_ID,)),
    Operation("GET", "/v1/sessions/{session_id}/events", sse.stream_events, "The session's frames as Server-Sent Events, resumable with `Last-Event-ID`.",
              errors=(*_SESSION, E.BAD_FRAME, E.SESSION_CLOSED, E.TOO_MANY_CONNECTIONS), stream=True, headers=("X-Connection-Id",), params=(
                  SESSION_ID,
                  Param("Last-Event-ID", "header", "Resume after this event (`<epoch>:<seq>`); sent by EventSource when it reconnects. Wins over the query parameter.", _CURSOR),
                  Param(sse.CURSOR_PARAM, "query", "Resume after this event on a first load (same format as `Last-Event-ID`). Without either (or empty): from the start of the log.", _CURSOR),
                  Param("follow", "query", "false: send the replay (or reset) and end, instead of staying open for live events.", {"type": "string", "enum": ["true", "false"]}),
                  Param("ticket", "query", "A ticket from POST /v1/tickets, for EventSource (it can't send headers).", {"type": "string"}),
              )),
    Operation("POST", "/v1/sessions/{session_id}/frames", post_frame, "Execute one client frame (query, interrupt, answers, model/mode change, reset, close); the reply is its ack.",
              Ack, body=cf.SessionFrame, errors=(*_SESSION, *_BAD_BODY, *_FRAME), params=(SESSION_ID, CONNECTION_ID)),
    Operation("POST", "/v1/sessions/{session_id}/fork", fork_session, "Continue the conversation in a new session of the caller: from now, or from just before `query_id` (edit and resend, try again).",
              ht.SessionStatus, 201, ht.ForkSession, (*_SESSION, *_BAD_BODY, *_FORK), headers=("Location", "Last-Event-ID"), params=(SESSION_ID,)),
    Operation("GET", "/v1/sessions/{session_id}/snapshot", get_snapshot, "State and transcript to rebuild a view from (after a `reset`); `Last-Event-ID` names its position.",
              Snapshot, errors=_SESSION, params=(SESSION_ID,), headers=("Last-Event-ID",)),
    Operation("GET", "/v1/sessions/{session_id}/runs/{run_id}", get_run, "A run's status, messages and result so far.",
              ht.Run, errors=(*_SESSION, E.NOT_FOUND), params=(SESSION_ID, RUN_ID)),
    Operation("POST", "/v1/sessions/{session_id}/runs/{run_id}/cancel", cancel_run, "Cancel a run: interrupt it when running, withdraw it when queued.",
              ht.Run, errors=(*_SESSION, E.NOT_FOUND, E.AGENT_ERROR), params=(SESSION_ID, RUN_ID)),
    Operation("GET", "/v1/profiles", list_profiles, "The profiles sessions can be created from, with their models, modes and tools.",
              ht.ProfileList, errors=(E.UNAUTHORIZED,)),
    Operation("POST", "/v1/profiles/{name}/check", check_profile, "Dry-run a profile: start its CLI, run one tiny turn, report model, tools and MCP servers.",
              ht.ProfileCheck, errors=(E.UNAUTHORIZED, E.PROFILE_NOT_FOUND, E.TOO_MANY_SESSIONS),
              params=(Param("name", "path", "A profile name.", _ID, True),)),
    Operation("POST", "/v1/tickets", issue_ticket, "Trade the bearer token for a short-lived ticket (`?ticket=`) for EventSource and browser WebSockets.",
              ht.Ticket, errors=(E.UNAUTHORIZED,)),
    Operation("GET", "/healthz", healthz, "Liveness: the process serves requests.", ht.Health, auth=False),
    Operation("GET", "/readyz", readyz, "Readiness: the CLI runs on this host, its sandbox is available, Redis (when configured) answers and the replica is not shutting down (503 when not).",
              ht.Readiness, auth=False, other_replies=((503, ht.Readiness),)),
)


_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def routes(operations: tuple[Operation, ...]) -> list[Route]:
    """One route per path taking every method: a wrong one gets 405 listing the path's methods in `Allow`
    (a route limited to its methods would let the static files mount at `/` answer instead)."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op.endpoint
    return [Route(path, _by_method(endpoints), methods=_ANY_METHOD) for path, endpoints in by_path.items()]


def _by_method(endpoints: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[[Request], Awaitable[Response]]:
    if "GET" in endpoints:
        endpoints = {**endpoints, "HEAD": endpoints["GET"]}

    async def endpoint(request: Request) -> Response:
        if request.method not in endpoints:
            raise HTTPException(405, headers={"Allow": ", ".join(endpoints)})
        return await endpoints[request.method](request)

    return endpoint
