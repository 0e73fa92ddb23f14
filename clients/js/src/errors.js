// Errors the client raises, and the gateway's stable codes.

/** Error codes carried by `error` frames and HTTP problem documents (`code`). */
export const ErrorCodes = Object.freeze({
  BAD_JSON: 'bad_json',
  BAD_FRAME: 'bad_frame',
  UNKNOWN_TYPE: 'unknown_type',
  FRAME_TOO_LARGE: 'frame_too_large',
  NOT_ATTACHED: 'not_attached',
  ALREADY_ATTACHED: 'already_attached',
  UNAUTHORIZED: 'unauthorized',
  SESSION_NOT_FOUND: 'session_not_found',
  SESSION_CLOSED: 'session_closed',
  PROFILE_NOT_FOUND: 'profile_not_found',
  FORBIDDEN_OPTION: 'forbidden_option',
  MODEL_NOT_ALLOWED: 'model_not_allowed',
  MODE_NOT_ALLOWED: 'mode_not_allowed',
  SUGGESTION_NOT_ALLOWED: 'suggestion_not_allowed',
  UNKNOWN_REQUEST: 'unknown_request',
  REQUEST_ALREADY_RESOLVED: 'request_already_resolved',
  INVALID_ANSWER: 'invalid_answer',
  TOO_MANY_SESSIONS: 'too_many_sessions',
  TOO_MANY_CONNECTIONS: 'too_many_connections',
  QUEUE_FULL: 'queue_full',
  AGENT_UNAVAILABLE: 'agent_unavailable',
  AGENT_ERROR: 'agent_error',
  NOT_FOUND: 'not_found',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  INTERNAL: 'internal',
});

/** WebSocket close codes the gateway uses; 4xxx are its own, the rest RFC 6455. */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  UNAUTHORIZED: 4001,
  HANDSHAKE_TIMEOUT: 4002,
  SLOW_CONSUMER: 4008,
  SESSION_CLOSED: 4009,
  HEARTBEAT_TIMEOUT: 4010,
});

/** The gateway refused something: an `error` frame or an HTTP problem document. */
export class GatewayError extends Error {
  /**
   * @param {string} code a value of ErrorCodes (or a newer one)
   * @param {string} message
   * @param {{ frameId?: string | null, status?: number }} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'GatewayError';
    /** @type {string} */
    this.code = code;
    /** @type {string | null} */
    this.frameId = details.frameId ?? null;
    /** HTTP status when the error came from an HTTP response. @type {number | undefined} */
    this.status = details.status;
  }
}

/** A frame broke the wire contract (from the gateway, or one the caller tried to send). */
export class ProtocolError extends Error {
  /**
   * @param {string} message
   * @param {unknown} [raw] the offending text or value
   */
  constructor(message, raw) {
    super(message);
    this.name = 'ProtocolError';
    this.raw = raw;
  }
}

/** The session connection is closed for good; frames can no longer be sent. */
export class ClosedError extends Error {
  /**
   * @param {string} message
   * @param {{ code?: string | null, cause?: unknown }} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'ClosedError';
    /** Why it closed: 'closed_by_client', 'session_closed', 'unauthorized', 'session_not_found', ... @type {string | null} */
    this.code = details.code ?? null;
    if (details.cause !== undefined) this.cause = details.cause;
  }
}

/** Error codes after which reconnecting cannot help: the session connection ends. */
export const FATAL_CODES = new Set([
  ErrorCodes.UNAUTHORIZED,
  ErrorCodes.SESSION_NOT_FOUND,
  ErrorCodes.SESSION_CLOSED,
  ErrorCodes.PROFILE_NOT_FOUND,
  ErrorCodes.FORBIDDEN_OPTION,
  ErrorCodes.MODEL_NOT_ALLOWED,
  ErrorCodes.MODE_NOT_ALLOWED,
  ErrorCodes.TOO_MANY_SESSIONS,
  ErrorCodes.BAD_FRAME,
  ErrorCodes.UNKNOWN_TYPE,
]);
