// chatgate client for browsers and node 20+: one chat session kept alive over as many
// sockets as it takes. No dependency, no build step: an ES module.
//
// The wire contract is docs/protocol.md (sections 2, 4 and 5). What this module does for you:
// authenticates with the subprotocols ["chatgate.v1", "bearer.<jwt>"]; delivers each
// thread's events once and in event_id order across reconnections; assembles streamed
// answer text by code-point offset; reconnects as the close-code table says and resumes
// every thread it follows; refreshes the token when the server warns that it expires.

/** The close-code table of docs/protocol.md section 5, as chatgate.closecodes has it. */
export const CLOSE_CODES = Object.freeze({
  1000: row("normal", "the connection ended normally", "nothing", "never"),
  1007: row("invalid_payload", "a text frame that is not valid UTF-8", "fix the client", "never"),
  1009: row("message_too_big", "a frame exceeded the maximum message size",
    "do not resend that message", "never"),
  1011: row("internal_error",
    "a bug in the server; the reason carries the correlation id of its log line",
    "reconnect with backoff; report the cid", "backoff"),
  1012: row("service_restart", "the server is draining (SIGTERM)", "reconnect now", "now"),
  1013: row("try_again_later", "a dependency is down, or the server is overloaded",
    "reconnect with backoff", "backoff"),
  4000: row("bad_request", "bad handshake or unsupported protocol", "fix the client", "never"),
  4001: row("auth_required", "no credential came, or none within the auth timeout",
    "send a credential", "never"),
  4003: row("auth_invalid",
    "the token was rejected (signature, algorithm, issuer, audience, format)",
    "get a valid token", "never"),
  4004: row("auth_expired", "the token has expired", "get a fresh token, then reconnect", "never"),
  4005: row("e2e_not_enabled", "a test token was used where E2E test mode is off",
    "do not use test tokens here", "never"),
  4006: row("origin_denied", "the Origin header is not allowed",
    "connect from an allowed origin (CHATGATE_ALLOWED_ORIGINS)", "never"),
  4007: row("session_invalid", "no session could be built from the token's claims",
    "fix the claims the session was built from", "never"),
  4009: row("too_many_errors", "the client sent repeated invalid messages", "fix the client",
    "never"),
  4010: row("connection_limit", "the user has too many open connections",
    "close other connections of this user first", "never"),
  4100: row("rate_limited", "the client kept sending past the rate limit",
    "reconnect after a backoff", "backoff"),
  4101: row("heartbeat_timeout", "the client did not answer the heartbeat in time",
    "reconnect with backoff", "backoff"),
  4102: row("slow_consumer", "the client read too slowly and its send queue overflowed",
    "reconnect with backoff, read faster", "backoff"),
});

function row(slug, explanation, advice, retry) {
  return Object.freeze({ slug, explanation, advice, retry });
}

// Codes a proxy or the network produces, never the server: going away, no status,
// abnormal closure (no close frame), bad gateway. They are worth retrying.
const TRANSIENT = Object.freeze({
  1001: "the server or a proxy went away",
  1005: "the connection closed without a status",
  1006: "the connection dropped without a close frame (network or proxy)",
  1014: "a proxy could not reach the server",
});

const CONNECTING = 0; // WebSocket.CONNECTING
const CLOSED = 3; // WebSocket.CLOSED
// How long an "error" waits for the "close" that browsers send right after it.
const ERROR_GRACE_MS = 50;

/**
 * Explain a close: the table's slug and words, what the client should do, and whether
 * (and how soon) to reconnect. Codes outside the table and the transient ones are
 * explained too; an unknown code is not retried.
 */
export function explainClose(code, reason = "") {
  const known = CLOSE_CODES[code];
  const colon = reason.indexOf(":");
  const reasonSlug = (colon >= 0 ? reason.slice(0, colon) : reason).trim();
  const reasonDetail = colon >= 0 ? reason.slice(colon + 1).trim() : "";
  if (known) {
    // The table's slug wins: a reason cut by a proxy must not rename the code.
    const detail = reasonSlug === known.slug ? reasonDetail : reason;
    const words = `${capitalize(known.explanation)}${detail ? ` (${detail})` : ""}. ` +
      `What to do: ${known.advice}.`;
    return { code, slug: known.slug, reason, detail, retry: known.retry, advice: known.advice,
      explanation: words };
  }
  if (TRANSIENT[code]) {
    return { code, slug: "connection_lost", reason, detail: reason, retry: "backoff",
      advice: "reconnect with backoff",
      explanation: `${capitalize(TRANSIENT[code])}. What to do: reconnect with backoff.` };
  }
  return { code, slug: reasonSlug || "unknown", reason, detail: reasonDetail, retry: "never",
    advice: "look at the server's logs",
    explanation: `The connection closed with code ${code}, which chatgate never sends` +
      `${reason ? ` (${reason})` : ""}. What to do: look at the server's logs.` };
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Full-jitter backoff: attempt n waits uniform(0, min(capMs, baseMs * 2**n)) ms;
 * a "now" retry waits nothing the first time.
 */
export function backoffDelay(retry, attempt, { baseMs = 500, capMs = 30000, random = Math.random } = {}) {
  if (retry === "never") throw new RangeError("no delay for a close that must not be retried");
  if (retry === "now" && attempt === 0) return 0;
  return random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 32));
}

/**
 * One streamed answer: each piece of text placed at its offset in code points, so a
 * repeated or overlapping delta changes nothing. A piece past the end waits for the gap
 * below it to be filled.
 */
export class TextAssembly {
  constructor() {
    this.text = "";
    this.length = 0; // in code points
    this._ahead = new Map(); // offset -> text, for pieces past the end
  }

  /** Place `text` at code-point `offset`; return whether the assembled text changed. */
  place(offset, text) {
    if (!Number.isInteger(offset) || offset < 0 || typeof text !== "string") return false;
    if (offset > this.length) {
      this._ahead.set(offset, text);
      return false;
    }
    const before = this.text;
    this._put(offset, text);
    for (let next = this._ahead.get(this.length); next !== undefined;
      next = this._ahead.get(this.length)) {
      this._ahead.delete(this.length);
      this._put(this.length, next);
    }
    for (const at of this._ahead.keys()) if (at < this.length) this._ahead.delete(at);
    return this.text !== before;
  }

  /** The final text of the answer (agent_completed): it wins over what was assembled. */
  finish(text) {
    this.text = text;
    this.length = Array.from(text).length;
    this._ahead.clear();
  }

  _put(offset, text) {
    const points = Array.from(text);
    if (offset === this.length) {
      this.text += text;
      this.length += points.length;
      return;
    }
    const current = Array.from(this.text);
    for (let i = 0; i < points.length; i += 1) current[offset + i] = points[i];
    this.text = current.join("");
    this.length = current.length;
  }
}

/**
 * Releases one thread's events exactly once and in event_id order. During a resume,
 * events past a gap are held until the gap fills or resume_complete says it will not.
 */
export class ThreadCursor {
  constructor(last = null) {
    this.last = last;
    this.held = new Map();
  }

  /** Take one event; return the events that can now be released, in order. */
  accept(event, holdGaps) {
    const id = event.event_id;
    if (this.last === null) this.last = id - 1;
    if (id <= this.last || this.held.has(id)) return [];
    if (!holdGaps && this.held.size === 0) {
      this.last = id;
      return [event];
    }
    this.held.set(id, event);
    const released = [];
    while (this.held.has(this.last + 1)) {
      this.last += 1;
      released.push(this.held.get(this.last));
      this.held.delete(this.last);
    }
    return released;
  }

  /** Release what is held past a gap the server's log does not fill. */
  flush() {
    const ids = [...this.held.keys()].sort((a, b) => a - b);
    const released = ids.map((id) => this.held.get(id));
    this.held.clear();
    if (ids.length) this.last = ids[ids.length - 1];
    return released;
  }
}

/** An `error` frame answering a request, or a request that could not be answered. */
export class ChatgateError extends Error {
  constructor(code, message, { correlationId = null, close = null } = {}) {
    super(`${code}: ${message}`);
    this.name = "ChatgateError";
    this.code = code;
    this.correlationId = correlationId;
    this.close = close;
  }
}

/**
 * A chat session with a chatgate server.
 *
 * new ChatgateClient(url, { token, getToken, WebSocket, reconnect, requestTimeoutMs })
 * Give `token`, or `getToken` (sync or async, returning a token): it is asked for every
 * connection and when the server sends token_expiring.
 */
export class ChatgateClient {
  constructor(url, options = {}) {
    const { token = null, getToken = null, WebSocket: Socket = globalThis.WebSocket,
      reconnect = {}, requestTimeoutMs = 30000, openTimeoutMs = 10000 } = options;
    if (!token && !getToken) throw new TypeError("give a token or a getToken callback");
    if (typeof Socket !== "function") {
      throw new TypeError("no WebSocket constructor: pass one as the WebSocket option " +
        "(node 20 needs --experimental-websocket)");
    }
    this.url = url;
    this.reconnects = 0;
    this.connection = null; // the connection_established payload of the current socket
    this._token = token;
    this._getToken = getToken;
    this._Socket = Socket;
    this._policy = { baseMs: 500, capMs: 30000, maxAttempts: 10, random: Math.random,
      ...reconnect };
    this._requestTimeoutMs = requestTimeoutMs;
    this._openTimeoutMs = openTimeoutMs;
    this._handlers = new Map();
    this._cursors = new Map(); // thread_id -> ThreadCursor
    this._resuming = new Set(); // thread ids with a resume in flight on this socket
    this._texts = new Map(); // message_id -> TextAssembly
    this._runMessages = new Map(); // run_id -> message_id of its answer
    this._pending = new Map(); // request id -> {kind, threadId, resolve, reject, timer}
    this._ids = 0;
    this._ws = null;
    this._open = false;
    this._stopped = null; // the close explanation that ended the session for good
    this._closing = false;
    this._waiters = [];
    this._timer = null;
    this._openTimer = null;
    this._dialed = false;
    this._refreshedAfterExpiry = false;
  }

  /** Subscribe to a server event type, or "text", "open", "close", "reconnecting", "event". */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type).delete(fn);
  }

  /** Open the session; resolve with the connection_established payload. */
  connect() {
    if (this._stopped) return Promise.reject(this._closedError(this._stopped));
    if (!this._dialed) {
      this._dialed = true;
      this._dial(0, true);
    }
    return this._whenOpen();
  }

  /** Send a user message; resolve with its ack {message_id, thread_id, run_id, ...}. */
  async send(text, { threadId = null } = {}) {
    const frame = { type: "user_message", payload: { text } };
    if (threadId) frame.thread_id = threadId;
    return this._request(frame, "message_ack", threadId);
  }

  /** Ask the server to cancel a run: it ends with agent_completed, status "cancelled". */
  async cancel(runId) {
    await this._whenOpen();
    this._write({ type: "cancel", run_id: runId, id: this._nextId() });
  }

  /**
   * Follow a thread from after `afterEventId`: its missed events come through the event
   * callbacks, in order; resolve with the resume_complete payload ({last_event_id}).
   */
  async resume(threadId, afterEventId = 0) {
    if (!Number.isInteger(afterEventId) || afterEventId < 0) {
      throw new RangeError("afterEventId must be an integer, 0 or more");
    }
    await this._whenOpen();
    // The server sends a socket each event once: on a socket that already had this
    // thread's events, only those it has not sent yet come again.
    this._cursors.set(threadId, new ThreadCursor(afterEventId));
    return this._request({ type: "resume", thread_id: threadId, after_event_id: afterEventId },
      "resume_complete", threadId);
  }

  /** Send token_refresh with `token` (or one from getToken); resolve with the answer. */
  async refreshToken(token = null) {
    const fresh = token ?? (this._getToken ? await this._getToken() : null);
    if (!fresh) throw new TypeError("give a token or construct the client with getToken");
    const answer = await this._request({ type: "token_refresh", token: fresh }, "token_refreshed");
    this._token = fresh;
    return answer;
  }

  /** Send ping; resolve with the pong payload. */
  ping() {
    return this._request({ type: "ping" }, "pong");
  }

  /** The last event id delivered for a thread (null when not followed). */
  lastEventId(threadId) {
    return this._cursors.get(threadId)?.last ?? null;
  }

  /** The threads this client follows (resumed after every reconnection). */
  get threads() {
    return [...this._cursors.keys()];
  }

  /** The answer text assembled so far for a message id (or a run id), or null. */
  textOf(id) {
    const messageId = this._runMessages.get(id) ?? id;
    return this._texts.get(messageId)?.text ?? null;
  }

  /** End the session: no reconnection; pending requests fail. */
  close() {
    if (this._closing) return;
    this._closing = true;
    clearTimeout(this._timer);
    clearTimeout(this._openTimer);
    const explanation = { code: 1000, slug: "normal", reason: "closed by the client", detail: "",
      retry: "never", advice: "nothing", explanation: "The client closed the connection.",
      willReconnect: false, byClient: true };
    if (this._ws) this._ws.close(1000, "normal: closed by the client");
    this._stop(explanation);
    this._emit("close", explanation);
  }

  /**
   * Handle one server frame (a JSON string or a decoded object) as if the socket had
   * received it. The socket calls this; tests and other transports may too.
   */
  handleFrame(raw) {
    let frame = raw;
    if (typeof raw === "string") {
      try {
        frame = JSON.parse(raw);
      } catch {
        return;
      }
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
    if (typeof frame.payload !== "object" || frame.payload === null) frame.payload = {};
    if (typeof frame.thread_id === "string" && Number.isInteger(frame.event_id)) {
      this._onThreadEvent(frame);
      return;
    }
    this._onReply(frame);
  }

  // Frames

  _onThreadEvent(frame) {
    const threadId = frame.thread_id;
    let cursor = this._cursors.get(threadId);
    if (!cursor) {
      cursor = new ThreadCursor();
      this._cursors.set(threadId, cursor);
    }
    for (const event of cursor.accept(frame, this._resuming.has(threadId))) this._release(event);
  }

  _release(event) {
    const { payload } = event;
    this._emit("event", event);
    if (event.type === "agent_text_delta") {
      const messageId = payload.message_id ?? `run:${event.run_id}`;
      if (event.run_id) this._runMessages.set(event.run_id, messageId);
      const assembly = this._assembly(messageId);
      const changed = assembly.place(payload.offset, payload.text);
      this._emit(event.type, event);
      if (changed) this._emitText(event, messageId, assembly, false);
      return;
    }
    if (event.type === "agent_completed" && typeof payload.text === "string") {
      const messageId = this._runMessages.get(event.run_id) ?? `run:${event.run_id}`;
      const assembly = this._assembly(messageId);
      assembly.finish(payload.text);
      this._emit(event.type, event);
      this._emitText(event, messageId, assembly, true);
      return;
    }
    this._emit(event.type, event);
  }

  _assembly(messageId) {
    let assembly = this._texts.get(messageId);
    if (!assembly) {
      assembly = new TextAssembly();
      this._texts.set(messageId, assembly);
    }
    return assembly;
  }

  _emitText(event, messageId, assembly, final) {
    this._emit("text", { thread_id: event.thread_id, run_id: event.run_id,
      message_id: messageId, event_id: event.event_id, text: assembly.text, final,
      status: final ? event.payload.status ?? "completed" : null });
  }

  _onReply(frame) {
    const { payload } = frame;
    switch (frame.type) {
      case "connection_established":
        this.connection = payload;
        this._open = true;
        for (const waiter of this._waiters.splice(0)) waiter.resolve(payload);
        break;
      case "message_ack":
        if (!this._cursors.has(payload.thread_id) && typeof payload.thread_id === "string") {
          // A thread new to this client; one it started has a log that starts at 1.
          const started = !this._pending.get(payload.client_message_id)?.threadId;
          this._cursors.set(payload.thread_id, new ThreadCursor(started ? 0 : null));
        }
        this._answer(payload.client_message_id, payload);
        break;
      case "pong":
      case "token_refreshed":
        this._firstOf(frame.type, null, payload);
        break;
      case "resume_complete":
        this._onResumeComplete(frame);
        break;
      case "token_expiring":
        if (this._getToken) {
          this.refreshToken().catch((error) => this._emit("refresh_failed", error));
        }
        break;
      case "error":
        this._onError(payload);
        break;
      default:
        break;
    }
    this._emit(frame.type, frame);
  }

  _onResumeComplete(frame) {
    const threadId = frame.thread_id;
    this._resuming.delete(threadId);
    const cursor = this._cursors.get(threadId);
    if (cursor) for (const event of cursor.flush()) this._release(event);
    this._firstOf("resume_complete", threadId, frame.payload);
  }

  _onError(payload) {
    const pending = this._pending.get(payload.id);
    if (!pending) return;
    if (pending.kind === "resume_complete") {
      this._resuming.delete(pending.threadId);
      if (payload.code === "thread_not_found") this._cursors.delete(pending.threadId);
    }
    this._settle(payload.id, null, new ChatgateError(String(payload.code),
      String(payload.message), { correlationId: payload.correlation_id ?? null }));
  }

  _answer(id, payload) {
    if (this._pending.has(id)) this._settle(id, payload, null);
  }

  _firstOf(kind, threadId, payload) {
    for (const [id, pending] of this._pending) {
      if (pending.kind === kind && (threadId === null || pending.threadId === threadId)) {
        this._settle(id, payload, null);
        return;
      }
    }
  }

  _emit(type, value) {
    for (const fn of [...(this._handlers.get(type) ?? [])]) fn(value);
  }

  // Requests

  _nextId() {
    this._ids += 1;
    return `c${this._ids}`;
  }

  async _request(frame, kind, threadId = null) {
    await this._whenOpen();
    const id = this._nextId();
    const answer = this._expect(id, kind, threadId);
    if (kind === "resume_complete") this._resuming.add(threadId);
    this._write({ ...frame, id });
    return answer;
  }

  _expect(id, kind, threadId) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settle(id, null,
        new ChatgateError("timeout", `no ${kind} within ${this._requestTimeoutMs} ms`)),
      this._requestTimeoutMs);
      this._pending.set(id, { kind, threadId, resolve, reject, timer });
    });
  }

  _settle(id, value, error) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  _write(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _whenOpen() {
    if (this._stopped) return Promise.reject(this._closedError(this._stopped));
    if (!this._dialed) return Promise.reject(new TypeError("call connect() first"));
    if (this._open) return Promise.resolve(this.connection);
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  _closedError(explanation) {
    return new ChatgateError(explanation.slug, explanation.explanation, { close: explanation });
  }

  // Sockets

  async _dial(attempt, initial) {
    let token;
    try {
      token = this._getToken ? await this._getToken() : this._token;
    } catch {
      this._stop({ ...explainClose(4001, "auth_required: getToken failed"), willReconnect: false });
      return;
    }
    if (this._closing) return;
    this._token = token;
    let ws;
    try {
      ws = new this._Socket(this.url, ["chatgate.v1", `bearer.${token}`]);
    } catch (error) {
      // A malformed URL or a token that cannot be a subprotocol name: no retry mends it.
      this._stop({ ...explainClose(4000, `bad_request: ${error.message}`), willReconnect: false });
      return;
    }
    this._ws = ws;
    this._watch(ws, attempt, initial);
  }

  _watch(ws, attempt, initial) {
    let established = false;
    const ended = (code, reason) => {
      clearTimeout(this._openTimer);
      if (this._ws !== ws) return;
      this._ws = null;
      this._open = false;
      this._resuming.clear();
      this._onSocketClosed(code, reason, { attempt, initial, established });
    };
    clearTimeout(this._openTimer);
    this._openTimer = setTimeout(() => {
      // No connection_established in time: a black hole, or a proxy holding the upgrade.
      ended(1006, "");
      ws.close();
    }, this._openTimeoutMs);
    ws.onmessage = (message) => {
      if (typeof message.data !== "string") return;
      const wasOpen = this._open;
      this.handleFrame(message.data);
      if (!wasOpen && this._open) {
        established = true;
        clearTimeout(this._openTimer);
        this._onEstablished(!initial);
      }
    };
    ws.onclose = (event) => ended(event.code, event.reason ?? "");
    // Node 20's WebSocket fires only "error", never "close", when it cannot connect,
    // and stays CONNECTING: a socket that never opened is over after its error.
    ws.onerror = () => {
      setTimeout(() => {
        if (ws.readyState === CONNECTING || ws.readyState === CLOSED) ended(1006, "");
      }, ERROR_GRACE_MS);
    };
  }

  _onEstablished(isReconnect) {
    this._refreshedAfterExpiry = false;
    if (isReconnect) {
      this.reconnects += 1;
      this._resumeAll();
    }
    this._emit("open", this.connection);
  }

  _resumeAll() {
    // Every followed thread, from the last event released. A resume() still waiting
    // for its answer is answered by this one (it carries that request's id).
    for (const [threadId, cursor] of this._cursors) {
      let id = [...this._pending].find(
        ([, p]) => p.kind === "resume_complete" && p.threadId === threadId)?.[0];
      if (id === undefined) {
        id = this._nextId();
        this._expect(id, "resume_complete", threadId).catch((error) => {
          this._emit("resume_failed", { thread_id: threadId, error });
        });
      }
      this._resuming.add(threadId);
      this._write({ type: "resume", id, thread_id: threadId, after_event_id: cursor.last ?? 0 });
    }
  }

  _onSocketClosed(code, reason, { attempt, initial, established }) {
    if (this._closing) return;
    const explanation = explainClose(code, reason);
    let { retry } = explanation;
    if (code === 4004 && this._getToken && !this._refreshedAfterExpiry) {
      // "get a fresh token, then reconnect": getToken gives one, once per loss.
      retry = "now";
      this._refreshedAfterExpiry = true;
    }
    // A first connection that never reached the server (refused, DNS) usually means a
    // wrong URL: say so at once rather than retry it.
    if (initial && !established && !CLOSE_CODES[code]) retry = "never";
    const nextAttempt = established ? 0 : attempt + 1;
    const exhausted = this._policy.maxAttempts !== null && nextAttempt >= this._policy.maxAttempts;
    const willReconnect = retry !== "never" && !exhausted;
    const report = { ...explanation, retry, willReconnect };
    if (retry !== "never" && exhausted) {
      report.explanation += ` Gave up after ${nextAttempt} reconnection attempts.`;
    }
    this._failRequests(report);
    this._emit("close", report);
    if (!willReconnect) {
      this._stop(report);
      return;
    }
    const delayMs = backoffDelay(retry, nextAttempt, this._policy);
    this._emit("reconnecting", { attempt: nextAttempt, delayMs, retry, cause: report });
    this._timer = setTimeout(() => this._dial(nextAttempt, false), delayMs);
  }

  _failRequests(report) {
    // A resume survives the loss: the next socket resumes the thread and answers it.
    for (const [id, pending] of this._pending) {
      if (pending.kind === "resume_complete" && report.willReconnect) continue;
      const what = pending.kind === "message_ack" ? "message_not_confirmed" : "interrupted";
      this._settle(id, null, new ChatgateError(what,
        `the connection closed before the answer: ${report.explanation}`, { close: report }));
    }
  }

  _stop(explanation) {
    if (this._stopped) return;
    this._stopped = explanation;
    this._open = false;
    const error = this._closedError(explanation);
    for (const waiter of this._waiters.splice(0)) waiter.reject(error);
    for (const id of [...this._pending.keys()]) this._settle(id, null, error);
  }
}
