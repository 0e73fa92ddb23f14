/**
 * The agent-gateway wire contract (protocol version 1), mirrored from `gateway/wire/*.py`.
 *
 * Client frames carry `type` and a client-chosen `id`; server frames carry `type`;
 * event bodies carry `kind`. A WebSocket message may hold several server frames separated by "\n".
 */

// ---------------------------------------------------------------------------------------------
// Shared

export type PermissionMode = "default" | "acceptEdits" | "plan" | "bypassPermissions" | "dontAsk" | "auto";
export type SessionState = "starting" | "idle" | "running" | "awaiting_approval" | "interrupted" | "closed" | "failed" | "hibernated";
export type JsonObject = { [key: string]: unknown };
/** Anthropic content block (text, image, document, tool_use, tool_result, thinking, ...). */
export interface ContentBlock {
  type: string;
  [key: string]: unknown;
}

/** Who did something: the principal and the connection (tab) it came through. */
export interface Actor {
  principal: string;
  connection?: string | null;
}

// ---------------------------------------------------------------------------------------------
// Client frames

export interface OpenFrame {
  type: "open";
  id: string;
  profile?: string;
  model?: string | null;
  permission_mode?: PermissionMode | null;
  allowed_tools?: string[] | null;
  disallowed_tools?: string[] | null;
  max_turns?: number | null;
  max_budget_usd?: number | null;
  /** Structured output (only when the profile lets clients choose one). */
  output_format?: OutputFormat | null;
  /** Extended thinking; may only narrow the profile's. */
  thinking?: ThinkingConfig | null;
  /** At most the profile's (`high` when it sets none). */
  effort?: Effort | null;
}
export type Effort = "low" | "medium" | "high" | "xhigh" | "max";
export type ThinkingConfig =
  | { type: "adaptive"; display?: "summarized" | "omitted" }
  | { type: "enabled"; budget_tokens: number; display?: "summarized" | "omitted" }
  | { type: "disabled" };
/** Every turn ends with JSON matching `schema` in its result's `structured_output`. */
export interface OutputFormat {
  type?: "json_schema";
  schema: JsonObject;
}
export interface AttachFrame {
  type: "attach";
  id: string;
  session_id: string;
  /** The last sequence number this client applied (0: from the start). */
  after?: number;
  epoch?: string | null;
}
export interface QueryFrame {
  type: "query";
  id: string;
  prompt: string | ContentBlock[];
}
export interface InterruptFrame {
  type: "interrupt";
  id: string;
}
export interface PermissionResponseFrame {
  type: "permission_response";
  id: string;
  request_id: string;
  decision: "allow" | "deny";
  updated_input?: JsonObject | null;
  message?: string | null;
  interrupt?: boolean;
  apply_suggestions?: number[];
}
export interface QuestionResponseFrame {
  type: "question_response";
  id: string;
  request_id: string;
  /** Question text -> chosen option label, labels (multiSelect) or free text. */
  answers: { [question: string]: string | string[] };
}
export interface SetModelFrame {
  type: "set_model";
  id: string;
  model: string;
}
export interface SetPermissionModeFrame {
  type: "set_permission_mode";
  id: string;
  mode: PermissionMode;
}
export interface ResetConversationFrame {
  type: "reset_conversation";
  id: string;
  mode?: "soft" | "hard";
}
/** How full the context window is; the ack's `result` is a `ContextUsage`. */
export interface GetContextUsageFrame {
  type: "get_context_usage";
  id: string;
}
/** Summarise the conversation (the CLI's `/compact`); runs as a query with this frame's id. */
export interface CompactFrame {
  type: "compact";
  id: string;
  instructions?: string | null;
}
/** Put the agent's file changes back as they were when `query_id` was sent. */
export interface RewindFilesFrame {
  type: "rewind_files";
  id: string;
  query_id: string;
}
/** Continue the conversation in a new session, from now or from just before `query_id`; the ack's result is `{session_id}`. */
export interface ForkFrame {
  type: "fork";
  id: string;
  query_id?: string | null;
}
/** Run one of the profile's slash commands (without the slash) as a query. */
export interface RunCommandFrame {
  type: "run_command";
  id: string;
  command: string;
  args?: string | null;
}
export interface GetMcpStatusFrame {
  type: "get_mcp_status";
  id: string;
}
export interface ReconnectMcpServerFrame {
  type: "reconnect_mcp_server";
  id: string;
  name: string;
}
export interface ToggleMcpServerFrame {
  type: "toggle_mcp_server";
  id: string;
  name: string;
  enabled: boolean;
}
/** One of the profile's MCP servers (`get_mcp_status`), spelled as the CLI spells it. */
export interface McpServerStatus {
  name: string;
  status: "connected" | "failed" | "needs-auth" | "pending" | "disabled" | (string & {});
  serverInfo?: JsonObject | null;
  error?: string | null;
  tools?: { name: string; description?: string | null }[] | null;
}
/** Stop a running background task. */
export interface StopTaskFrame {
  type: "stop_task";
  id: string;
  task_id: string;
}
export interface CloseFrame {
  type: "close";
  id: string;
}
export interface PingFrame {
  type: "ping";
  id: string;
}

export type SessionFrame =
  | QueryFrame
  | InterruptFrame
  | PermissionResponseFrame
  | QuestionResponseFrame
  | SetModelFrame
  | SetPermissionModeFrame
  | ResetConversationFrame
  | GetContextUsageFrame
  | CompactFrame
  | StopTaskFrame
  | RewindFilesFrame
  | ForkFrame
  | RunCommandFrame
  | GetMcpStatusFrame
  | ReconnectMcpServerFrame
  | ToggleMcpServerFrame
  | CloseFrame;
export type ClientFrame = OpenFrame | AttachFrame | PingFrame | SessionFrame;
export type ClientFrameType = ClientFrame["type"];
/** A session frame without its `id` (the client assigns one). */
export type SessionFrameInput = DistributiveOmit<SessionFrame, "id"> & { id?: string };
type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never;

// ---------------------------------------------------------------------------------------------
// Event bodies (`kind`)

export interface StateEvent {
  kind: "state";
  state: SessionState;
  reason?: string | null;
}
/** A client's query as accepted; `queued` when a turn was already running. */
export interface UserQueryEvent {
  kind: "user_query";
  query_id: string;
  prompt: string | ContentBlock[];
  by: Actor;
  queued?: boolean;
  /** Run as the agent's own command (`compact`, `run_command`), not as the text sent. */
  command?: boolean;
}
export interface TurnStartedEvent {
  kind: "turn_started";
  query_id: string;
}
/** A raw Anthropic Messages streaming event. */
export interface StreamEvent {
  kind: "stream";
  event: AnthropicStreamEvent;
  parent_tool_use_id?: string | null;
}
export interface AssistantMessageEvent {
  kind: "assistant_message";
  content: ContentBlock[];
  model: string;
  message_id?: string | null;
  parent_tool_use_id?: string | null;
  usage?: JsonObject | null;
  error?: string | null;
  stop_reason?: string | null;
}
/** A user-role message from the agent loop: tool results, interruption notices. */
export interface UserMessageEvent {
  kind: "user_message";
  content: string | ContentBlock[];
  parent_tool_use_id?: string | null;
  tool_use_result?: unknown;
  /** The CLI's id for this message. */
  uuid?: string | null;
  /** What produced a message no person typed, e.g. `{kind: "task-notification"}`. */
  origin?: JsonObject | null;
}
export interface SystemEvent {
  kind: "system";
  subtype: string;
  data: JsonObject;
}
export interface TaskEvent {
  kind: "task";
  subtype: "task_started" | "task_progress" | "task_notification" | "task_updated" | (string & {});
  task_id: string;
  /** `running`, then a terminal one: `completed`, `failed`, `stopped`, `killed`. */
  status?: string | null;
  description?: string | null;
  /** `local_bash` (a shell command), `local_agent` (a subagent), ... */
  task_type?: string | null;
  tool_use_id?: string | null;
  last_tool_name?: string | null;
  summary?: string | null;
  usage?: JsonObject | null;
  /** The CLI's whole message, host paths removed. */
  data: JsonObject;
}
/** A background task still running (`session.tasks`). */
export interface TaskInfo {
  task_id: string;
  description?: string | null;
  task_type?: string | null;
  tool_use_id?: string | null;
  last_tool_name?: string | null;
}
export interface ResultEvent {
  kind: "result";
  query_id: string | null;
  subtype: string;
  is_error: boolean;
  duration_ms: number;
  duration_api_ms: number;
  num_turns: number;
  /** This turn's cost (absent on the gateway's own results: `cancelled`, `agent_exited`, `agent_unavailable`, `agent_unresponsive`, `message_too_large`). */
  cost_usd?: number | null;
  /** The session's cost so far, across agent restarts. */
  total_cost_usd?: number | null;
  usage?: JsonObject | null;
  result?: string | null;
  stop_reason?: string | null;
  terminal_reason?: string | null;
  permission_denials?: unknown[] | null;
  errors?: string[] | null;
  /** The agent's JSON, when the session has an `output_format`. */
  structured_output?: unknown;
  /** Per model, spelled as the CLI spells it; `contextWindow` with the input tokens tells how full the context is. */
  model_usage?: { [model: string]: ModelUsage } | null;
  api_error_status?: number | null;
  deferred_tool_use?: { id: string; name: string; input: JsonObject } | null;
  origin?: JsonObject | null;
}
export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadInputTokens: number;
  cacheCreationInputTokens: number;
  thinkingTokens: number;
  webSearchRequests: number;
  costUSD: number;
  contextWindow?: number | null;
  maxOutputTokens?: number | null;
}
export interface PermissionRequestEvent {
  kind: "permission_request";
  request_id: string;
  tool_name: string;
  input: JsonObject;
  /** Unix milliseconds. */
  expires_at: number;
  tool_use_id?: string | null;
  suggestions?: JsonObject[];
  title?: string | null;
  display_name?: string | null;
  description?: string | null;
  decision_reason?: string | null;
  agent_id?: string | null;
}
export interface QuestionOption {
  label: string;
  description?: string;
  [key: string]: unknown;
}
export interface QuestionItem {
  question: string;
  header?: string;
  options?: QuestionOption[];
  multiSelect?: boolean;
  [key: string]: unknown;
}
export interface QuestionEvent {
  kind: "question";
  request_id: string;
  questions: QuestionItem[];
  expires_at: number;
  tool_use_id?: string | null;
}
export type RequestOutcome = "allowed" | "denied" | "answered" | "expired" | "cancelled";
export interface RequestResolvedEvent {
  kind: "request_resolved";
  request_id: string;
  outcome: RequestOutcome;
  by?: Actor | null;
  updated_input?: JsonObject | null;
  message?: string | null;
  answers?: { [question: string]: string | string[] } | null;
}
export interface ModelChangedEvent {
  kind: "model_changed";
  model: string;
  by: Actor;
}
export interface PermissionModeChangedEvent {
  kind: "permission_mode_changed";
  mode: string;
  by: Actor;
}
export interface FilesRewoundEvent {
  kind: "files_rewound";
  query_id: string;
  by: Actor;
}
/** Another replica runs the session from now on (its owner was lost, or handed it over); nothing logged is lost. */
export interface AgentRecoveredEvent {
  kind: "agent_recovered";
  reason: "owner_lost" | "handover";
  ownerless_ms: number;
}
export interface ConversationResetEvent {
  kind: "conversation_reset";
  mode: "soft" | "hard";
  by: Actor;
}
export interface AgentErrorEvent {
  kind: "error";
  code: string;
  message: string;
  recoverable?: boolean;
}
export type RateLimitStatus = "allowed" | "allowed_warning" | "rejected";
/** The subscription rate-limit state, spelled as the CLI spells it; `resetsAt` is unix seconds. */
export interface RateLimitInfo {
  status: RateLimitStatus;
  resetsAt?: number | null;
  rateLimitType?: string | null;
  utilization?: number | null;
  overageStatus?: RateLimitStatus | null;
  overageResetsAt?: number | null;
  overageDisabledReason?: string | null;
}
export interface RateLimitEvent {
  kind: "rate_limit";
  info: RateLimitInfo;
}

export type SessionEvent =
  | StateEvent
  | UserQueryEvent
  | TurnStartedEvent
  | StreamEvent
  | AssistantMessageEvent
  | UserMessageEvent
  | SystemEvent
  | TaskEvent
  | ResultEvent
  | PermissionRequestEvent
  | QuestionEvent
  | RequestResolvedEvent
  | ModelChangedEvent
  | PermissionModeChangedEvent
  | ConversationResetEvent
  | FilesRewoundEvent
  | AgentRecoveredEvent
  | AgentErrorEvent
  | RateLimitEvent;
export type EventKind = SessionEvent["kind"];
export type EventOfKind<K extends EventKind> = Extract<SessionEvent, { kind: K }>;
export type PendingRequest = PermissionRequestEvent | QuestionEvent;

/** The subset of Anthropic streaming events the gateway relays (others pass through untyped). */
export type AnthropicStreamEvent =
  | { type: "message_start"; message: { id: string; model?: string; [key: string]: unknown } }
  | { type: "content_block_start"; index: number; content_block: ContentBlock }
  | {
      type: "content_block_delta";
      index: number;
      delta:
        | { type: "text_delta"; text: string }
        | { type: "input_json_delta"; partial_json: string }
        | { type: "thinking_delta"; thinking: string }
        | { type: "signature_delta"; signature: string }
        | { type: string; [key: string]: unknown };
    }
  | { type: "content_block_stop"; index: number }
  | { type: "message_delta"; delta: JsonObject; usage?: JsonObject }
  | { type: "message_stop" }
  | { type: string; [key: string]: unknown };

// ---------------------------------------------------------------------------------------------
// Server frames

/** One logged event: `seq` counts from 1 per session epoch with no gaps; `ts` is unix ms. */
export interface EventFrame<E extends SessionEvent = SessionEvent> {
  type: "event";
  seq: number;
  epoch: string;
  ts: number;
  event: E;
}
export interface AckFrame {
  type: "ack";
  id: string;
  result?: JsonObject | null;
  duplicate?: boolean;
}
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  /** The refused frame's id; absent when it had no valid id (or, for `bad_json`, none could be read). */
  id?: string | null;
}
export interface PongFrame {
  type: "pong";
  id: string;
  ts: number;
}
/**
 * The bounds a client plans around. The log keeps at most `log_max_events`, `log_max_bytes` and
 * `log_max_age_s` of events (whichever is smallest; a cursor older than that gets a `reset`); a
 * snapshot's transcript holds the last `transcript_max_events`; at most `max_queued_queries` wait;
 * a client frame (an HTTP body) is at most `max_frame_bytes`.
 */
export interface SessionLimits {
  log_max_events: number;
  log_max_bytes: number;
  log_max_age_s: number;
  transcript_max_events: number;
  max_queued_queries: number;
  max_frame_bytes: number;
}
export interface SessionInfo {
  session_id: string;
  profile: string;
  model: string | null;
  permission_mode: string;
  state: SessionState;
  epoch: string;
  last_seq: number;
  created_at: number;
  last_activity: number;
  turns: number;
  total_cost_usd: number;
  queued: number;
  pending: PendingRequest[];
  allowed_models: string[] | null;
  allowed_modes: string[];
  limits: SessionLimits;
  /** The latest `rate_limit` event's info. */
  rate_limit?: RateLimitInfo | null;
  /** Background tasks still running. */
  tasks?: TaskInfo[];
}
/** `get_context_usage`'s result, spelled as the CLI spells it. `percentage` (0-100) is `totalTokens` of `maxTokens`. */
export interface ContextUsage {
  categories: { name: string; tokens: number; isDeferred?: boolean }[];
  totalTokens: number;
  maxTokens: number;
  rawMaxTokens: number;
  percentage: number;
  model?: string | null;
  isAutoCompactEnabled?: boolean | null;
  autoCompactThreshold?: number | null;
}
/** Reply to `open`/`attach`: events after `after` follow (replay), then the live tail. */
export interface AttachedFrame {
  type: "attached";
  id: string;
  connection: string;
  after: number;
  session: SessionInfo;
  protocol: number;
}
export interface Snapshot {
  session: SessionInfo;
  transcript: SessionEvent[];
  /** The text streamed so far of an assistant message still being written. */
  streaming_text?: string | null;
  /** Its thinking streamed so far, while the thinking block is still being written. */
  streaming_thinking?: string | null;
}
/** Why a cursor can't be served; new reasons may be added within version 1 (treat them alike). */
export type ResetReason = "cursor_too_old" | "cursor_ahead" | "epoch_mismatch";
/**
 * The client's cursor can't be served: events after it were evicted (`cursor_too_old`), it is
 * beyond the last event (`cursor_ahead`), or it names another epoch: rebuild from this snapshot.
 */
export interface ResetFrame {
  type: "reset";
  reason: ResetReason | (string & {});
  snapshot: Snapshot;
  id?: string | null;
  connection?: string | null;
}
export type ServerFrame = EventFrame | AckFrame | ErrorFrame | PongFrame | AttachedFrame | ResetFrame;
export type ServerFrameType = ServerFrame["type"];

// ---------------------------------------------------------------------------------------------
// HTTP

export interface Profile {
  name: string;
  description?: string;
  model?: string | null;
  models?: string[] | null;
  permission_mode?: string;
  permission_modes?: string[];
  /** Sessions keep file checkpoints: `rewind_files` works. */
  enable_file_checkpointing?: boolean;
  [key: string]: unknown;
}
export interface Ticket {
  ticket: string;
  /** Unix milliseconds. */
  expires_at: number;
}
