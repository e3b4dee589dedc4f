// The client's pure parts, and its session logic driven by a scripted socket: no server.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLOSE_CODES, ChatgateClient, TextAssembly, ThreadCursor, backoffDelay, explainClose,
} from "../chatgate.js";
import { freePort, waitFor } from "../testing/gateway.mjs";

class ScriptedSocket {
  static made = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closedWith = null;
    ScriptedSocket.made.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
  }

  receive(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }

  establish() {
    this.receive({ type: "connection_established", event_id: null, payload: { user_id: "u" } });
  }

  serverClose(code, reason) {
    this.onclose({ code, reason });
  }
}

function scripted(options = {}) {
  ScriptedSocket.made = [];
  return new ChatgateClient("ws://gateway.test/ws", {
    token: "tok", WebSocket: ScriptedSocket, reconnect: { random: () => 0 }, ...options,
  });
}

function delta(eventId, offset, text, extra = {}) {
  return { type: "agent_text_delta", event_id: eventId, thread_id: "th", run_id: "run",
    payload: { message_id: "msg", offset, text }, ...extra };
}

test("text is placed by code-point offset: astral characters count once", () => {
  const answer = new TextAssembly();
  assert.equal(answer.place(0, "👋🏽 h"), true);
  assert.equal(answer.length, 4);
  assert.equal(answer.place(4, "éllo"), true);
  assert.equal(answer.text, "👋🏽 héllo");
  assert.equal(answer.length, 8);
});

test("a repeated or overlapping delta changes nothing", () => {
  const answer = new TextAssembly();
  answer.place(0, "abc");
  assert.equal(answer.place(0, "abc"), false);
  assert.equal(answer.place(1, "bc"), false);
  assert.equal(answer.place(2, "cde"), true);
  assert.equal(answer.text, "abcde");
});

test("a delta past the end waits for the gap below it", () => {
  const answer = new TextAssembly();
  assert.equal(answer.place(3, "def"), false);
  assert.equal(answer.text, "");
  assert.equal(answer.place(0, "abc"), true);
  assert.equal(answer.text, "abcdef");
});

test("the final text wins over the assembled text", () => {
  const answer = new TextAssembly();
  answer.place(0, "6*7 = 4");
  answer.finish("6*7 = 42");
  assert.equal(answer.text, "6*7 = 42");
  assert.equal(answer.length, 8);
});

test("a cursor releases each event once, in order", () => {
  const cursor = new ThreadCursor(0);
  assert.deepEqual(cursor.accept({ event_id: 1 }, false).map((e) => e.event_id), [1]);
  assert.deepEqual(cursor.accept({ event_id: 1 }, false), []);
  assert.deepEqual(cursor.accept({ event_id: 3 }, true), []);
  assert.deepEqual(cursor.accept({ event_id: 2 }, true).map((e) => e.event_id), [2, 3]);
  assert.equal(cursor.last, 3);
});

test("a cursor flushes what a resume will not fill", () => {
  const cursor = new ThreadCursor(4);
  assert.deepEqual(cursor.accept({ event_id: 9 }, true), []);
  assert.deepEqual(cursor.accept({ event_id: 10 }, true), []);
  assert.deepEqual(cursor.flush().map((e) => e.event_id), [9, 10]);
  assert.equal(cursor.last, 10);
  assert.deepEqual(cursor.accept({ event_id: 8 }, false), []);
});

test("the close table is chatgate's: 40xx never, 41xx/1011/1013 backoff, 1012 now", () => {
  for (const [code, row] of Object.entries(CLOSE_CODES)) {
    const expected = Number(code) === 1012 ? "now"
      : Number(code) >= 4100 || [1011, 1013].includes(Number(code)) ? "backoff" : "never";
    assert.equal(row.retry, expected, `code ${code}`);
  }
  // Every code of docs/protocol.md section 5 (tests/unit/test_js_close_table.py checks them one by one).
  assert.equal(Object.keys(CLOSE_CODES).length, 18);
});

test("a close is explained in words, with the table's slug", () => {
  const bad = explainClose(4003, "auth_invalid: signature verification failed");
  assert.equal(bad.slug, "auth_invalid");
  assert.equal(bad.retry, "never");
  assert.equal(bad.detail, "signature verification failed");
  assert.equal(bad.explanation, "The token was rejected (signature, algorithm, issuer, " +
    "audience, format) (signature verification failed). What to do: get a valid token.");
  assert.equal(explainClose(4004, "cut").slug, "auth_expired");
  assert.equal(explainClose(1006).retry, "backoff");
  assert.equal(explainClose(1006).slug, "connection_lost");
  assert.equal(explainClose(4999, "odd").retry, "never");
});

test("backoff is full jitter under an exponential ceiling", () => {
  const top = { random: () => 1 };
  assert.equal(backoffDelay("backoff", 0, top), 500);
  assert.equal(backoffDelay("backoff", 3, top), 4000);
  assert.equal(backoffDelay("backoff", 12, top), 30000);
  assert.equal(backoffDelay("backoff", 3, { random: () => 0 }), 0);
  assert.equal(backoffDelay("now", 0, top), 0);
  assert.equal(backoffDelay("now", 1, top), 1000);
  assert.throws(() => backoffDelay("never", 0));
});

test("deltas assemble into text updates; agent_completed is final", () => {
  const client = scripted();
  const updates = [];
  client.on("text", (update) => updates.push([update.text, update.final]));
  client.handleFrame(delta(1, 0, "6*7"));
  client.handleFrame(delta(2, 3, " = "));
  client.handleFrame(delta(2, 3, " = "));
  client.handleFrame(delta(3, 3, " = "));
  client.handleFrame(delta(4, 6, "42"));
  client.handleFrame({ type: "agent_completed", event_id: 5, thread_id: "th", run_id: "run",
    payload: { text: "6*7 = 42", status: "completed" } });
  assert.deepEqual(updates, [["6*7", false], ["6*7 = ", false], ["6*7 = 42", false],
    ["6*7 = 42", true]]);
  assert.equal(client.textOf("msg"), "6*7 = 42");
  assert.equal(client.textOf("run"), "6*7 = 42");
  assert.equal(client.lastEventId("th"), 5);
});

test("an event already seen is ignored", () => {
  const client = scripted();
  const seen = [];
  client.on("event", (event) => seen.push(event.event_id));
  for (const id of [1, 2, 2, 1, 3]) {
    client.handleFrame({ type: "agent_thinking", event_id: id, thread_id: "th", payload: {} });
  }
  assert.deepEqual(seen, [1, 2, 3]);
});

test("the token goes in the subprotocols; send resolves with the ack", async () => {
  const client = scripted();
  const connecting = client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  const [socket] = ScriptedSocket.made;
  assert.deepEqual(socket.protocols, ["chatgate.v1", "bearer.tok"]);
  socket.establish();
  assert.deepEqual(await connecting, { user_id: "u" });
  const sending = client.send("hi");
  await waitFor(() => socket.sent.length === 1);
  const frame = socket.sent[0];
  assert.equal(frame.type, "user_message");
  assert.deepEqual(frame.payload, { text: "hi" });
  socket.receive({ type: "message_ack", event_id: null, payload: { client_message_id: frame.id,
    message_id: "m1", thread_id: "th", run_id: "r1" } });
  assert.deepEqual(await sending, { client_message_id: frame.id, message_id: "m1",
    thread_id: "th", run_id: "r1" });
  assert.deepEqual(client.threads, ["th"]);
  assert.equal(client.lastEventId("th"), 0);
});

test("an error frame naming a request rejects it", async () => {
  const client = scripted();
  client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  const [socket] = ScriptedSocket.made;
  socket.establish();
  const resuming = client.resume("th_other", 0);
  await waitFor(() => socket.sent.length === 1);
  socket.receive({ type: "error", event_id: null, payload: { code: "thread_not_found",
    message: "no such thread", correlation_id: "cid1", id: socket.sent[0].id } });
  await assert.rejects(resuming, { code: "thread_not_found", correlationId: "cid1" });
  assert.deepEqual(client.threads, []);
});

test("a 40xx close stops the session with its explanation, no reconnection", async () => {
  const client = scripted();
  const closes = [];
  client.on("close", (close) => closes.push(close));
  const connecting = client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  ScriptedSocket.made[0].serverClose(4003, "auth_invalid: bad signature");
  await assert.rejects(connecting, { code: "auth_invalid" });
  assert.equal(closes.length, 1);
  assert.equal(closes[0].willReconnect, false);
  assert.equal(closes[0].retry, "never");
  assert.match(closes[0].explanation, /token was rejected/);
  assert.equal(ScriptedSocket.made.length, 1);
  await assert.rejects(client.send("x"), { code: "auth_invalid" });
});

test("after 1012 the client reconnects at once and resumes every thread it follows", async () => {
  const client = scripted();
  client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  const first = ScriptedSocket.made[0];
  first.establish();
  first.receive(delta(1, 0, "abc"));
  first.receive(delta(2, 3, "def"));
  first.serverClose(1012, "service_restart: draining");
  await waitFor(() => ScriptedSocket.made.length === 2);
  const second = ScriptedSocket.made[1];
  second.establish();
  assert.equal(client.reconnects, 1);
  const resume = second.sent[0];
  assert.equal(resume.type, "resume");
  assert.equal(resume.thread_id, "th");
  assert.equal(resume.after_event_id, 2);
  // A live event overtaking the replay waits for it; the merged replay fills the text.
  second.receive(delta(6, 9, "jk"));
  second.receive(delta(5, 0, "abcdefghi"));
  assert.equal(client.textOf("msg"), "abcdef");
  second.receive({ type: "resume_complete", event_id: null, thread_id: "th",
    payload: { last_event_id: 6 } });
  assert.equal(client.textOf("msg"), "abcdefghijk");
  assert.equal(client.lastEventId("th"), 6);
  client.close();
});

test("a pending message fails as not confirmed when the socket drops", async () => {
  const client = scripted();
  client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  ScriptedSocket.made[0].establish();
  const sending = client.send("hi");
  await waitFor(() => ScriptedSocket.made[0].sent.length === 1);
  ScriptedSocket.made[0].serverClose(4101, "heartbeat_timeout: no pong");
  await assert.rejects(sending, { code: "message_not_confirmed" });
  await waitFor(() => ScriptedSocket.made.length === 2);
  client.close();
});

test("token_expiring asks getToken and sends token_refresh", async () => {
  let calls = 0;
  ScriptedSocket.made = [];
  const client = new ChatgateClient("ws://gateway.test/ws", {
    getToken: async () => { calls += 1; return `tok${calls}`; }, WebSocket: ScriptedSocket,
  });
  client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  const [socket] = ScriptedSocket.made;
  assert.deepEqual(socket.protocols, ["chatgate.v1", "bearer.tok1"]);
  socket.establish();
  socket.receive({ type: "token_expiring", event_id: null, payload: { expires_in_s: 30 } });
  await waitFor(() => socket.sent.length === 1);
  assert.equal(socket.sent[0].type, "token_refresh");
  assert.equal(socket.sent[0].token, "tok2");
  client.close();
});

test("close() ends the session without reconnecting", async () => {
  const client = scripted();
  client.connect();
  await waitFor(() => ScriptedSocket.made.length === 1);
  const [socket] = ScriptedSocket.made;
  socket.establish();
  client.close();
  assert.deepEqual(socket.closedWith, { code: 1000, reason: "normal: closed by the client" });
  socket.serverClose(1000, "normal: closed by the client");
  assert.equal(ScriptedSocket.made.length, 1);
});

test("a refused first connection is reported at once, not retried", async () => {
  const port = await freePort();
  const client = new ChatgateClient(`ws://127.0.0.1:${port}/ws`, { token: "tok" });
  const closes = [];
  client.on("close", (close) => closes.push(close));
  await assert.rejects(client.connect(), { code: "connection_lost" });
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 1006);
  assert.equal(closes[0].willReconnect, false);
});

test("a request before connect() is refused, not left waiting", async () => {
  const client = scripted();
  await assert.rejects(client.send("hi"), TypeError);
});
