"""Who is calling: static bearer tokens, and short-lived signed tickets for browsers.

Browsers can't set headers on a WebSocket or an EventSource, so they either offer the token as a
WebSocket subprotocol (`bearer.<token>` next to `agent-gateway.v1`) or trade it for a ticket
(`POST /v1/tickets`) and pass `?ticket=`. Tickets are HMAC-signed, so any replica sharing the
secret accepts them; they live `ticket_ttl_s` and name only the principal.

No credential is ever written to a log: `RedactCredentials` blanks tickets in logged URLs and
bearer tokens wherever a log line would carry one.
"""

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time

from starlette.requests import HTTPConnection

from gateway.config import Settings

log = logging.getLogger("gateway.auth")

SUBPROTOCOL = "agent-gateway.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."
ANONYMOUS = "anonymous"
_CREDENTIAL = re.compile(r"(?i)([?&](?:ticket|token|access_token)=|\bbearer[. ]\s*)[^\s&\"',]+")
REDACTED = "[redacted]"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.disabled = settings.insecure_no_auth
        tokens = settings.token_map()
        self.generated_token: str | None = None
        if not tokens and not self.disabled:
            self.generated_token = secrets.token_urlsafe(24)
            tokens = {self.generated_token: "dev"}
        self._principals = {_digest(token): principal for token, principal in tokens.items()}
        self._secret = settings.ticket_secret.encode() or secrets.token_bytes(32)
        self._ttl_s = settings.ticket_ttl_s

    def principal_for_token(self, token: str) -> str | None:
        return self._principals.get(_digest(token))

    def issue_ticket(self, principal: str) -> tuple[str, int]:
        """A ticket for `principal` and its expiry (unix ms)."""
        expires = int((time.time() + self._ttl_s) * 1000)
        body = f"{principal}\n{expires}\n{secrets.token_hex(8)}".encode()
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("="), expires

    def principal_for_ticket(self, ticket: str) -> str | None:
        try:
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
        except (ValueError, TypeError):
            return None
        body, mac = raw[:-32], raw[-32:]
        if len(raw) <= 32 or not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()):
            return None
        try:
            principal, expires, _ = body.decode().split("\n")
            if int(expires) < time.time() * 1000:
                return None
        except ValueError:
            return None
        return principal

    def authenticate(self, conn: HTTPConnection, tickets: bool = True) -> str | None:
        """The principal behind a request or WebSocket handshake, or None. `tickets=False` where a
        ticket must not do (minting tickets: a leaked one could otherwise be renewed forever)."""
        if self.disabled:
            return ANONYMOUS
        header = conn.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.principal_for_token(header[7:].strip())
        for offered in offered_subprotocols(conn):
            if offered.startswith(BEARER_SUBPROTOCOL_PREFIX):
                return self.principal_for_token(offered[len(BEARER_SUBPROTOCOL_PREFIX):])
        ticket = conn.query_params.get("ticket") if tickets else None
        if ticket:
            return self.principal_for_ticket(ticket)
        return None


def offered_subprotocols(conn: HTTPConnection) -> list[str]:
    """From the ASGI scope's `subprotocols` (some servers, e.g. uvicorn on wsproto, take the header
    out of `headers`), else from the header."""
    offered = conn.scope.get("subprotocols")
    if offered is not None:
        return list(offered)
    raw = conn.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def redact(text: str) -> str:
    """`text` with every ticket and bearer token in it blanked (the one redaction every log path uses)."""
    return _CREDENTIAL.sub(lambda m: m.group(1) + REDACTED, text)


class RedactCredentials(logging.Filter):
    """Blank tickets (`?ticket=`, reusable until they expire) and bearer tokens in a record's text.

    uvicorn logs every request's path with its query string, EventSource and browser WebSocket
    tickets included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def redact_logs(*loggers: str) -> None:
    """Put `RedactCredentials` on these loggers (once each)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
