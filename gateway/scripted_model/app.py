"""Starlette app exposing the Anthropic API endpoints the Claude Code CLI calls.

Measured with CLI 2.1.330: streamed `POST /v1/messages?beta=true` for turns,
/compact and (unless nonessential traffic is disabled) session titles; a non-streaming
`max_tokens: 1` "Hi" on `set_model`; `POST /v1/messages/count_tokens` (16 of them) on
`get_context_usage`; and `HEAD /api/hello`, only with nonessential traffic enabled.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .script import MessagesRequest, plan_reply
from .sse import estimate_tokens, message, stream

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


class RecordedRequest(msgspec.Struct):
    """A request as received, so tests can check what the CLI actually sent."""

    method: str
    path: str
    body: Any


def _json_response(data: Any, status: int = 200) -> Response:
    return Response(_json.encode(data), status, media_type="application/json")


def _error(status: int, kind: str, text: str) -> Response:
    return _json_response({"type": "error", "error": {"type": kind, "message": text}}, status)


def create_app(recorded: deque[RecordedRequest] | None = None) -> Starlette:
    """Build the app; every request is appended to `recorded` when one is given."""

    async def read(request: Request) -> bytes:
        raw = await request.body()
        if recorded is not None:
            try:
                body: Any = msgspec.json.decode(raw) if raw else None
            except msgspec.DecodeError:
                body = raw
            recorded.append(RecordedRequest(request.method, request.url.path, body))
        return raw

    async def messages(request: Request) -> Response:
        raw = await read(request)
        try:
            req = msgspec.json.decode(raw, type=MessagesRequest)
        except msgspec.DecodeError as exc:
            return _error(400, "invalid_request_error", str(exc))
        reply, tokens = plan_reply(req), estimate_tokens(len(raw))
        if req.stream:
            return StreamingResponse(stream(reply, req.model, tokens), media_type="text/event-stream")
        return _json_response(message(reply, req.model, tokens))

    async def count_tokens(request: Request) -> Response:
        return _json_response({"input_tokens": estimate_tokens(len(await read(request)))})

    async def hello(request: Request) -> Response:
        await read(request)
        return Response()

    async def unknown(request: Request) -> Response:
        await read(request)
        log.warning("scripted model: unhandled %s %s", request.method, request.url.path)
        return _error(404, "not_found_error", f"{request.method} {request.url.path} is not scripted")

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/", hello, methods=["GET", "HEAD"]),
            Route("/api/hello", hello, methods=["GET", "HEAD"]),
            Route("/{path:path}", unknown, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
