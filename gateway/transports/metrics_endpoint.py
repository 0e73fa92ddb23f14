"""`GET /metrics`: the app's Prometheus metrics, behind a bearer token on the main port, and optionally
without one on a port of its own (`metrics_port`), for a scraper that has no token.

The separate listener is a minimal HTTP/1.1 server on the app's event loop (a scrape reads the
sessions, which only that loop may touch): one request per connection, then close.
"""

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Authenticator
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.transports import http_common
from gateway.wire.errors import ErrorCode, GatewayError

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 16_384


async def metrics(request: Request) -> Response:
    auth: Authenticator = request.app.state.auth
    if auth.authenticate(request, tickets=False) is None:  # any principal's token; a ticket in a scraper's URL would be logged
        raise GatewayError(ErrorCode.UNAUTHORIZED, "send `Authorization: Bearer <token>` (a ticket is not accepted here)")
    return Response(http_common.manager(request).metrics.exposition(), media_type=CONTENT_TYPE)


async def serve_port(metrics: GatewayMetrics, host: str, port: int) -> asyncio.Server:
    """Listen on `host:port` for `GET /metrics`; the caller closes the server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
            if target.split(b"?", 1)[0] == b"/metrics" and method in (b"GET", b"HEAD"):
                status, kind, body = b"200 OK", CONTENT_TYPE.encode(), metrics.exposition()
            else:
                status, kind, body = b"404 Not Found", b"text/plain", b"only GET /metrics here\n"
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, kind, len(body))
                + (body if method != b"HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that doesn't send a request head in time, or leaves: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)
