// Types of chatgate.js, the chatgate client for browsers and node 20+.

export type Retry = "never" | "backoff" | "now";

export interface CloseRow {
  readonly slug: string;
  readonly explanation: string;
  readonly advice: string;
  readonly retry: Retry;
}

/** The close-code table of docs/protocol.md section 5. */
export const CLOSE_CODES: Readonly<Record<number, CloseRow>>;

/** Why a socket closed, in words, and what the client does about it. */
export interface CloseExplanation {
  code: number;
  slug: string;
  /** The reason string the server sent ("<slug>: <detail>"). */
  reason: string;
  detail: string;
  retry: Retry;
  advice: string;
  /** A sentence for people: what happened and what to do. */
  explanation: string;
  /** Present on the "close" event: whether the client reconnects by itself. */
  willReconnect?: boolean;
  /** True when the client's own close() ended the session. */
  byClient?: boolean;
}

export function explainClose(code: number, reason?: string): CloseExplanation;

export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  random?: () => number;
}

export function backoffDelay(retry: Retry, attempt: number, options?: BackoffOptions): number;

export class TextAssembly {
  text: string;
  /** The text's length in Unicode code points. */
  length: number;
  place(offset: number, text: string): boolean;
  finish(text: string): void;
}

export interface ServerEvent<P = Record<string, unknown>> {
  type: string;
  event_id: number | null;
  thread_id: string | null;
  run_id?: string | null;
  ts?: string;
  payload: P;
}

export class ThreadCursor {
  constructor(last?: number | null);
  last: number | null;
  accept(event: ServerEvent, holdGaps: boolean): ServerEvent[];
  flush(): ServerEvent[];
}

export class ChatgateError extends Error {
  /** An error code of docs/protocol.md section 4, or "timeout", "interrupted", "message_not_confirmed", or a close slug. */
  code: string;
  correlationId: string | null;
  close: CloseExplanation | null;
}

export interface MessageAck {
  client_message_id: string;
  message_id: string;
  thread_id: string;
  run_id: string;
}

export interface TextUpdate {
  thread_id: string;
  run_id: string | null;
  message_id: string;
  event_id: number;
  /** The answer so far (or, when final, the whole answer). */
  text: string;
  final: boolean;
  status: "completed" | "cancelled" | null;
}

export interface ReconnectOptions {
  baseMs?: number;
  capMs?: number;
  /** Reconnection attempts after one loss; null: no bound. Default 10. */
  maxAttempts?: number | null;
  random?: () => number;
}

export interface ClientOptions {
  token?: string;
  /** Asked for every connection and on token_expiring; may return a promise. */
  getToken?: () => string | Promise<string>;
  /** A WebSocket constructor; defaults to globalThis.WebSocket. */
  WebSocket?: new (url: string, protocols: string[]) => WebSocket;
  reconnect?: ReconnectOptions;
  requestTimeoutMs?: number;
}

export interface ReconnectNotice {
  attempt: number;
  delayMs: number;
  retry: Retry;
  cause: CloseExplanation;
}

type Handler<T> = (value: T) => void;

export class ChatgateClient {
  constructor(url: string, options: ClientOptions);
  readonly url: string;
  reconnects: number;
  /** The connection_established payload of the current socket. */
  connection: Record<string, unknown> | null;
  readonly threads: string[];

  connect(): Promise<Record<string, unknown>>;
  send(text: string, options?: { threadId?: string | null }): Promise<MessageAck>;
  cancel(runId: string): Promise<void>;
  resume(threadId: string, afterEventId?: number): Promise<{ last_event_id: number }>;
  refreshToken(token?: string | null): Promise<Record<string, unknown>>;
  ping(): Promise<Record<string, unknown>>;
  lastEventId(threadId: string): number | null;
  textOf(messageOrRunId: string): string | null;
  close(): void;
  handleFrame(frame: string | Record<string, unknown>): void;

  on(type: "text", fn: Handler<TextUpdate>): () => void;
  on(type: "close", fn: Handler<CloseExplanation>): () => void;
  on(type: "reconnecting", fn: Handler<ReconnectNotice>): () => void;
  on(type: "open", fn: Handler<Record<string, unknown>>): () => void;
  on(type: "resume_failed", fn: Handler<{ thread_id: string; error: ChatgateError }>): () => void;
  on(type: "refresh_failed", fn: Handler<ChatgateError>): () => void;
  /** "event": every thread event once, in order; or any server event type by name. */
  on(type: string, fn: Handler<ServerEvent<any>>): () => void;
}
