"""`GET /openapi.json`: an OpenAPI 3.1 document built from the operation table and the msgspec wire types.

Nothing is written twice: schemas come from the types the endpoints decode and encode, and each
operation's error responses from its problem codes through `problems.STATUS`.
"""

import functools
from collections import defaultdict
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.transports.http_api import OPERATIONS, Operation
from gateway.transports.problems import PROBLEM_TYPE, STATUS
from gateway.wire.errors import ErrorCode
from gateway.wire.http import Problem
from gateway.wire.server import Attached, EventFrame, Reset

REF = "#/components/schemas/{name}"
SSE_FRAMES = (Attached, Reset, EventFrame)  # what a stream's `data:` can hold
DESCRIPTION = """\
HTTP transport of agent-gateway: the same sessions, frames, events and resume as the WebSocket
(`/v1/ws`). Events arrive as Server-Sent Events from `GET /v1/sessions/{id}/events`; client frames
go up with `POST /v1/sessions/{id}/frames`. Errors are RFC 9457 problem documents whose `code` is the
WebSocket error code. See protocol/HTTP.md.
"""
_HEADERS = {
    "Location": "The new session's URL.",
    "Last-Event-ID": "The stream position (`<epoch>:<seq>`) the body reflects; open the event stream from there.",
    "X-Connection-Id": "This stream's connection id; send it with POSTs to tie them to this stream.",
}
_RETRY_AFTER = "With `at_capacity`: seconds to wait before trying again (also `retry_after_ms` in the body)."


def _types(ops: tuple[Operation, ...]) -> list[Any]:
    found: list[Any] = [Problem, *SSE_FRAMES]
    for op in ops:
        for kind in (op.reply, op.body, *(t for _, t in op.other_replies)):
            if kind is not None and kind not in found:
                found.append(kind)
    return found


def _json(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": schema}}


def _success(op: Operation, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    headers = {name: {"description": _HEADERS[name], "schema": {"type": "string"}, "required": True} for name in op.headers}
    content = {"text/event-stream": {"schema": _sse_event(schemas)}} if op.stream else _json(schemas[op.reply])
    return {"description": op.summary, "content": content, "headers": headers}


def _sse_event(schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """One SSE message (OpenAPI 3.1 describes a stream by its events): `data` is one frame's JSON."""
    frame = {"oneOf": [schemas[t] for t in SSE_FRAMES]}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": frame},
            "id": {"type": "string", "pattern": "^[^:]*:[0-9]+$", "description": "`<epoch>:<seq>`: send it back as `Last-Event-ID`."},
            "event": {"type": "string", "const": "message", "description": "Frames have no event name: `onmessage` sees them all."},
            "retry": {"type": "integer", "description": "On the first message: the reconnection delay in ms."},
        },
    }


def _operation(op: Operation, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.endpoint.__name__, "summary": op.summary}
    if op.params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "description": p.description, "required": p.required, "schema": p.schema} for p in op.params
        ]
    if op.body is not None:
        out["requestBody"] = {"required": op.method != "POST" or op.path != "/v1/sessions", "content": _json(schemas[op.body])}
    responses: dict[str, Any] = {str(op.status): _success(op, schemas)}
    for status, kind in op.other_replies:
        responses[str(status)] = {"description": op.summary, "content": _json(schemas[kind])}
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in op.errors:
        by_status[STATUS[code]].append(code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "Problem: " + ", ".join(f"`{c}`" for c in codes),
            "content": _json(schemas[Problem], PROBLEM_TYPE),
        }
        if ErrorCode.AT_CAPACITY in codes:
            responses[str(status)]["headers"] = {"Retry-After": {"description": _RETRY_AFTER, "schema": {"type": "string"}}}
    out["responses"] = responses
    out["security"] = [{"bearer": []}, {"ticket": []}] if op.auth else []
    return out


def document(ops: tuple[Operation, ...]) -> dict[str, Any]:
    types = _types(ops)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas = dict(zip(types, refs))
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for op in ops:
        paths[op.path][op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "agent-gateway HTTP API", "version": __version__, "description": DESCRIPTION},
        "paths": dict(paths),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from AGENT_GATEWAY_TOKENS."},
                "ticket": {"type": "apiKey", "in": "query", "name": "ticket", "description": "A ticket from POST /v1/tickets."},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return Response(_encoded(), media_type="application/json")


@functools.cache
def _encoded() -> bytes:
    return msgspec.json.encode(document(ALL_OPERATIONS))


ALL_OPERATIONS = (*OPERATIONS, Operation("GET", "/openapi.json", openapi_json, "This document.", dict[str, Any], auth=False))
"""Every HTTP endpoint, this document's own included: what `create_app` routes."""
