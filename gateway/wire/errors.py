"""Stable error codes and WebSocket close codes shared by every transport."""

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """Codes carried by `error` frames and by HTTP problem documents (`code`)."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    NOT_ATTACHED = "not_attached"
    ALREADY_ATTACHED = "already_attached"
    UNAUTHORIZED = "unauthorized"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_CLOSED = "session_closed"
    PROFILE_NOT_FOUND = "profile_not_found"
    FORBIDDEN_OPTION = "forbidden_option"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MODE_NOT_ALLOWED = "mode_not_allowed"
    SUGGESTION_NOT_ALLOWED = "suggestion_not_allowed"
    UNKNOWN_REQUEST = "unknown_request"
    REQUEST_ALREADY_RESOLVED = "request_already_resolved"
    INVALID_ANSWER = "invalid_answer"
    UNKNOWN_TASK = "unknown_task"
    UNKNOWN_QUERY = "unknown_query"
    UNKNOWN_MCP_SERVER = "unknown_mcp_server"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    AT_CAPACITY = "at_capacity"
    QUEUE_FULL = "queue_full"
    AGENT_UNAVAILABLE = "agent_unavailable"
    AGENT_ERROR = "agent_error"
    OWNER_UNREACHABLE = "owner_unreachable"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses; 4xxx are ours, the rest RFC 6455."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4001
    HANDSHAKE_TIMEOUT = 4002
    SLOW_CONSUMER = 4008
    SESSION_CLOSED = 4009
    HEARTBEAT_TIMEOUT = 4010


class GatewayError(Exception):
    """An error a client caused or can act on; becomes an `error` frame or a problem document."""

    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms  # when trying again may succeed (`at_capacity`)
