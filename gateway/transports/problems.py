"""Errors over HTTP as RFC 9457 problem documents, with the same codes as WebSocket `error` frames.

`STATUS` is the one place an error code gets its HTTP status; the docs and `/openapi.json` read it too.
"""

import math
from collections.abc import Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.http import Problem

PROBLEM_TYPE = "application/problem+json"

STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.BAD_FRAME: 422,
    ErrorCode.UNKNOWN_TYPE: 422,
    ErrorCode.FRAME_TOO_LARGE: 413,
    ErrorCode.NOT_ATTACHED: 409,
    ErrorCode.ALREADY_ATTACHED: 409,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.SESSION_CLOSED: 409,
    ErrorCode.PROFILE_NOT_FOUND: 404,
    ErrorCode.FORBIDDEN_OPTION: 403,
    ErrorCode.MODEL_NOT_ALLOWED: 403,
    ErrorCode.MODE_NOT_ALLOWED: 403,
    ErrorCode.SUGGESTION_NOT_ALLOWED: 403,
    ErrorCode.UNKNOWN_REQUEST: 409,
    ErrorCode.REQUEST_ALREADY_RESOLVED: 409,
    ErrorCode.INVALID_ANSWER: 422,
    ErrorCode.UNKNOWN_TASK: 409,
    ErrorCode.UNKNOWN_QUERY: 404,
    ErrorCode.UNKNOWN_MCP_SERVER: 404,
    ErrorCode.TOO_MANY_SESSIONS: 429,
    ErrorCode.TOO_MANY_CONNECTIONS: 429,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.AT_CAPACITY: 503,
    ErrorCode.AGENT_UNAVAILABLE: 503,
    ErrorCode.AGENT_ERROR: 502,
    ErrorCode.OWNER_UNREACHABLE: 503,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INTERNAL: 500,
}
_FROM_STATUS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
_encode = msgspec.json.Encoder().encode


def problem_type(code: ErrorCode) -> str:
    """A stable URI per code (a URN: it names the problem, there is no page to fetch)."""
    return f"urn:agent-gateway:problem:{code}"


def problem(
    code: ErrorCode, detail: str, frame_id: str | None = None, headers: Mapping[str, str] | None = None, retry_after_ms: int | None = None,
) -> Response:
    status = STATUS[code]
    body = Problem(
        type=problem_type(code), title=code.replace("_", " "), status=status, detail=detail, code=code, id=frame_id, retry_after_ms=retry_after_ms,
    )
    headers = dict(headers or {})
    if code == ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="agent-gateway"'
    if retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_ms / 1000)))  # whole seconds (RFC 9110)
    return Response(_encode(body), status, headers, media_type=PROBLEM_TYPE)


def error_problem(exc: GatewayError, frame_id: str | None = None) -> Response:
    return problem(exc.code, exc.message, frame_id, retry_after_ms=exc.retry_after_ms)


async def gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_problem(exc, getattr(exc, "frame_id", None))


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, wrong method) from Starlette, as problems; keeps `Allow`."""
    assert isinstance(exc, HTTPException)
    code = _FROM_STATUS.get(exc.status_code, ErrorCode.NOT_FOUND)
    return problem(code, f"{request.method} {request.url.path}: {exc.detail}", headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets a problem document; Starlette re-raises so the server logs the traceback."""
    return problem(ErrorCode.INTERNAL, "internal error")


EXCEPTION_HANDLERS = {GatewayError: gateway_error, HTTPException: http_error, Exception: internal_error}
