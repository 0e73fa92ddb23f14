"""What every HTTP endpoint does first: who is calling, which session, what body; failures raise GatewayError."""

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from gateway import logs
from gateway.auth import Authenticator
from gateway.sessions.manager import SessionManager
from gateway.sessions.handle import SessionHandle
from gateway.wire.codec import TOO_DEEP, wire_decoder
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor

T = TypeVar("T")
CONNECTION_HEADER = "x-connection-id"
_CONNECTION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def manager(request: Request) -> SessionManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def principal(request: Request, tickets: bool = True) -> str:
    auth: Authenticator = request.app.state.auth
    found = auth.authenticate(request, tickets)
    if found is None:
        if not tickets:
            raise GatewayError(ErrorCode.UNAUTHORIZED, "tickets are issued for `Authorization: Bearer <token>` only, not for a ticket")
        raise GatewayError(ErrorCode.UNAUTHORIZED, "send `Authorization: Bearer <token>`, or `?ticket=` from POST /v1/tickets")
    logs.bind(found)
    return found


async def session(request: Request) -> tuple[str, SessionHandle]:
    """The caller and the session named in the path; another principal's session is reported as missing."""
    caller = principal(request)
    return caller, await manager(request).get(caller, request.path_params["session_id"])


def actor(request: Request, caller: str) -> Actor:
    """Frames posted over HTTP act for connection `X-Connection-Id` (an SSE stream's id), else `http`."""
    connection = request.headers.get(CONNECTION_HEADER)
    if connection is None:
        return Actor(principal=caller, connection="http")
    if not _CONNECTION_ID.fullmatch(connection):
        raise GatewayError(ErrorCode.BAD_FRAME, "X-Connection-Id is 1-128 characters of A-Z a-z 0-9 _ . : -")
    return Actor(principal=caller, connection=connection)


async def body(request: Request) -> bytes:
    """The request body as UTF-8 JSON text, refused past `max_frame_bytes` without reading the rest.

    UTF-8 is checked here because msgspec raises a bare UnicodeDecodeError for invalid bytes in strings.
    """
    limit: int = request.app.state.settings.max_frame_bytes
    too_large = GatewayError(ErrorCode.FRAME_TOO_LARGE, f"request bodies are limited to {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        raise GatewayError(ErrorCode.BAD_JSON, f"not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return bytes(data)


async def decode(request: Request, kind: type[T], empty: bytes | None = None) -> T:
    """Decode a JSON body as `kind`; `empty` stands in for an empty body when given."""
    raw = await body(request)
    try:
        return wire_decoder(kind).decode(raw or empty or b"")
    except msgspec.ValidationError as exc:
        raise GatewayError(ErrorCode.BAD_FRAME, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise GatewayError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise GatewayError(ErrorCode.BAD_JSON, TOO_DEEP) from None
