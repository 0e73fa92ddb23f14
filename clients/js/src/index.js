// @agent-gateway/client: sessions over WebSocket with an SSE fallback, typed events, chat state.

export { GatewayClient } from './client.js';
export { GatewaySession } from './session.js';
export { ChatState, foldChat, contentText, buildAnswers } from './chat.js';
export {
  decodeServerFrame,
  decodeServerMessage,
  decodeClientFrame,
  encodeClientFrame,
  validateServerFrame,
  validateClientFrame,
  validateEvent,
  isKnownEventKind,
  isEventKind,
  EVENT_KINDS,
  SERVER_FRAME_TYPES,
  CLIENT_FRAME_TYPES,
} from './codec.js';
export { GatewayError, ProtocolError, ClosedError, ErrorCodes, CloseCodes } from './errors.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { Emitter } from './emitter.js';
export { SseParser, SseTransport } from './transport-sse.js';
export { WebSocketTransport, webSocketUrl, SUBPROTOCOL } from './transport-ws.js';
export { renderMarkdown, renderInline, escapeHtml, safeUrl } from './markdown.js';

// Types, for `import type { ChatItem, EventFrame } from '@agent-gateway/client'` (TypeScript) or
// `@import` (JSDoc). The wire types are in ./protocol.d.ts.
/**
 * @typedef {import('./protocol.js').ClientFrame} ClientFrame
 * @typedef {import('./protocol.js').ServerFrame} ServerFrame
 * @typedef {import('./protocol.js').EventFrame} EventFrame
 * @typedef {import('./protocol.js').AttachedFrame} AttachedFrame
 * @typedef {import('./protocol.js').ResetFrame} ResetFrame
 * @typedef {import('./protocol.js').ResetReason} ResetReason
 * @typedef {import('./protocol.js').AckFrame} AckFrame
 * @typedef {import('./protocol.js').ErrorFrame} ErrorFrame
 * @typedef {import('./protocol.js').SessionEvent} SessionEvent
 * @typedef {import('./protocol.js').EventKind} EventKind
 * @typedef {import('./protocol.js').SessionInfo} SessionInfo
 * @typedef {import('./protocol.js').SessionLimits} SessionLimits
 * @typedef {import('./protocol.js').Snapshot} Snapshot
 * @typedef {import('./protocol.js').SessionState} SessionState
 * @typedef {import('./protocol.js').PermissionMode} PermissionMode
 * @typedef {import('./protocol.js').PermissionRequestEvent} PermissionRequestEvent
 * @typedef {import('./protocol.js').QuestionEvent} QuestionEvent
 * @typedef {import('./protocol.js').ResultEvent} ResultEvent
 * @typedef {import('./protocol.js').Profile} Profile
 * @typedef {import('./chat.js').ChatItem} ChatItem
 * @typedef {import('./chat.js').UserItem} UserItem
 * @typedef {import('./chat.js').TextItem} TextItem
 * @typedef {import('./chat.js').ThinkingItem} ThinkingItem
 * @typedef {import('./chat.js').ToolItem} ToolItem
 * @typedef {import('./chat.js').ApprovalItem} ApprovalItem
 * @typedef {import('./chat.js').QuestionCardItem} QuestionCardItem
 * @typedef {import('./chat.js').ResultItem} ResultItem
 * @typedef {import('./chat.js').NoticeItem} NoticeItem
 * @typedef {import('./chat.js').PendingItem} PendingItem
 * @typedef {import('./session.js').ConnectionState} ConnectionState
 * @typedef {import('./session.js').ConnectionStateChange} ConnectionStateChange
 * @typedef {import('./session.js').SessionOptions} SessionOptions
 * @typedef {import('./session.js').OpenOptions} OpenOptions
 * @typedef {import('./session.js').CloseInfo} CloseInfo
 * @typedef {import('./client.js').ClientOptions} ClientOptions
 */
