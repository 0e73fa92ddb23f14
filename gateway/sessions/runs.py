"""Run-and-poll: one query's status, messages and result, read off a session's transcript.

Queries run one at a time in arrival order, so replaying the transcript with a queue of open
queries tells which query every message belongs to: the oldest open one. A query closes with its
`result`: every query gets exactly one, the gateway's own when the CLI gives none (see `Session._end_query`).
"""

import collections

from gateway.wire import events as ev
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.http import Run, RunStatus
from gateway.wire.server import Snapshot


def result_status(result: ev.TurnResult) -> RunStatus:
    if result.subtype == "cancelled" or (result.terminal_reason or "").startswith("aborted"):
        return "cancelled"
    return "error" if result.is_error else "completed"


def latest_run(snapshot: Snapshot) -> Run | None:
    """The session's most recent run (its last query), or None before the first query of the conversation."""
    queries = [e.query_id for e in snapshot.transcript if isinstance(e, ev.UserQuery)]
    return run_view(snapshot, queries[-1]) if queries else None


def run_view(snapshot: Snapshot, run_id: str) -> Run:
    """The run started by query `run_id` in a session's `snapshot`; `not_found` when the transcript
    no longer has it (reset, or too old)."""
    open_queries: collections.deque[str] = collections.deque()
    prompt: str | list | None = None
    messages: list[ev.EventBody] = []
    result: ev.TurnResult | None = None
    for event in snapshot.transcript:
        if isinstance(event, ev.UserQuery):
            open_queries.append(event.query_id)
            if event.query_id == run_id:
                prompt = event.prompt
            continue
        owner = open_queries[0] if open_queries else None
        if owner == run_id:
            messages.append(event)
        if isinstance(event, ev.TurnResult) and event.query_id is not None and event.query_id in open_queries:
            open_queries.remove(event.query_id)
            if event.query_id == run_id:
                result = event
    if prompt is None:
        raise GatewayError(ErrorCode.NOT_FOUND, f"no run {run_id} in this session's conversation")
    info = snapshot.session
    running = bool(open_queries) and open_queries[0] == run_id and info.state in ("running", "awaiting_approval", "interrupted")
    status: RunStatus
    if result is not None:
        status = result_status(result)
    elif running:
        status = "awaiting_approval" if info.state == "awaiting_approval" else "running"
    else:
        status = "pending"
    return Run(
        run_id=run_id,
        session_id=info.session_id,
        status=status,
        prompt=prompt,
        messages=messages,  # type: ignore[arg-type]
        pending=info.pending if running else [],
        streaming_text=snapshot.streaming_text if running else None,
        result=result,
        structured_output=result.structured_output if result is not None else None,
        epoch=info.epoch,
        last_seq=info.last_seq,
    )
