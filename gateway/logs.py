"""Logging setup: text for people (the default) or one JSON object per line, with the ids a record concerns.

The ids travel in contextvars. A connection (WebSocket, SSE stream, HTTP request) binds a `LogScope`
with its principal and connection id, and the session id once it has one; the tasks it starts share
that scope object. A session's own tasks (its pump, its CLI's reader) run in a context of their own
that names the session and its principal: they outlive the connection that opened it. `frame_id` is
the client frame being handled. A record's explicit `extra=` ids win over the context's.

Invariant: no log line carries a token or ticket. Principals are names, never tokens; credentials in
logged URLs (uvicorn's access lines and its WebSocket lines show `?ticket=`) are redacted in both
formats.
"""

import contextlib
import contextvars
import copy
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from gateway.auth import redact

FORMATS = ("text", "json")
FIELDS = ("session_id", "principal", "connection_id", "frame_id", "seq")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACCESS_ARGS = ("client", "method", "path", "http_version", "status")  # uvicorn.access's record args, in order


class LogScope:
    __slots__ = ("connection_id", "principal", "session_id")

    def __init__(self, principal: str | None = None, connection_id: str | None = None, session_id: str | None = None) -> None:
        self.principal = principal
        self.connection_id = connection_id
        self.session_id = session_id


_scope: contextvars.ContextVar[LogScope | None] = contextvars.ContextVar("gateway_log_scope", default=None)
_frame: contextvars.ContextVar[str | None] = contextvars.ContextVar("gateway_log_frame", default=None)


def bind(principal: str | None = None, connection_id: str | None = None, session_id: str | None = None) -> None:
    """Start the current connection's or request's scope; the tasks it starts afterwards share it."""
    _scope.set(LogScope(principal, connection_id, session_id))


def bind_session(session_id: str) -> None:
    """The current connection attached to a session (every task of the connection sees it)."""
    scope = _scope.get()
    if scope is not None:
        scope.session_id = session_id


def session_context(session_id: str, principal: str) -> contextvars.Context:
    """The context a session's own tasks run in: the session's ids, no connection's."""
    context = contextvars.copy_context()
    context.run(_scope.set, LogScope(principal, None, session_id))
    context.run(_frame.set, None)
    return context


@contextlib.contextmanager
def frame(frame_id: str) -> Iterator[None]:
    token = _frame.set(frame_id)
    try:
        yield
    finally:
        _frame.reset(token)


class ContextFilter(logging.Filter):
    """On every handler: puts the context's ids on the record and redacts credentials in URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _scope.get()
        if scope is not None:
            for field in ("session_id", "principal", "connection_id"):
                if getattr(record, field, None) is None:
                    setattr(record, field, getattr(scope, field))
        if getattr(record, "frame_id", None) is None:
            record.frame_id = _frame.get()
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "=" in a else a for a in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids present, an access line's parts."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == len(_ACCESS_ARGS):
            out.update(zip(_ACCESS_ARGS, record.args))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the gateway's loggers and uvicorn's (given to uvicorn.run too)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format is one of {', '.join(FORMATS)}, not {log_format!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"context": {"()": ContextFilter}}
    if log_format == "json":
        config["formatters"] = {name: {"()": JsonFormatter} for name in ("default", "access")}
    config["formatters"]["gateway"] = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    config["handlers"]["gateway"] = {"formatter": "gateway", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    for handler in config["handlers"].values():
        handler["filters"] = ["context"]
    config["root"] = {"handlers": ["gateway"], "level": level.upper()}
    return config
