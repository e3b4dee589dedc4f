// The client against a real `chatgate serve` process (the repository's virtualenv).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ChatgateClient } from "../chatgate.js";
import { Gateway, haveGateway, mintToken, waitFor } from "../testing/gateway.mjs";

const missing = haveGateway() ? false
  : "no chatgate executable (set CHATGATE_TEST_BIN or create the repository's .venv)";

const AGENT_ORDER = ["agent_started", "agent_thinking", "tool_executing", "tool_completed",
  "agent_completed"];

/** A WebSocket constructor that counts the sockets it opens. */
function countingSocket() {
  const made = [];
  class Counted extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      made.push(this);
    }
  }
  return { Counted, made };
}

/** Record every event of `client` as delivered, and the final answers by run. */
function record(client) {
  const events = [];
  const finals = new Map();
  client.on("event", (event) => events.push(event));
  client.on("text", (update) => { if (update.final) finals.set(update.run_id, update); });
  return { events, finals };
}

function runEvents(events, runId) {
  return events.filter((event) => event.run_id === runId);
}

/** The run's event types with the streamed deltas and repeated steps squeezed out. */
function agentSteps(events) {
  const steps = [];
  for (const { type } of events) {
    if (type !== "agent_text_delta" && steps.at(-1) !== type) steps.push(type);
  }
  return steps;
}

describe("against a real gateway", { skip: missing }, () => {
  const gateway = new Gateway();
  before(() => gateway.start());
  after(() => gateway.stop());

  test("chat: the ack, the agent events in order, an answer with 42", async () => {
    const client = new ChatgateClient(gateway.wsUrl, { token: mintToken("js-chat") });
    const { events, finals } = record(client);
    const established = await client.connect();
    assert.equal(established.user_id, "js-chat");
    assert.equal(established.protocol, "chatgate.v1");
    const ack = await client.send("what is 6*7?");
    assert.match(ack.message_id, /\S/);
    assert.match(ack.thread_id, /\S/);
    assert.match(ack.run_id, /\S/);
    await waitFor(() => finals.has(ack.run_id), { what: "agent_completed" });
    const run = runEvents(events, ack.run_id);
    assert.deepEqual(agentSteps(run), AGENT_ORDER);
    assert.deepEqual(run.map((event) => event.event_id),
      run.map((_, index) => run[0].event_id + index));
    const tool = run.find((event) => event.type === "tool_completed");
    assert.equal(tool.payload.result, 42);
    assert.match(finals.get(ack.run_id).text, /42/);
    assert.equal(finals.get(ack.run_id).status, "completed");
    client.close();
  });

  test("the answer streams as agent_text_delta, assembled to the final text", async () => {
    const client = new ChatgateClient(gateway.wsUrl, { token: mintToken("js-stream") });
    const { events, finals } = record(client);
    const growing = [];
    client.on("text", (update) => { if (!update.final) growing.push(update.text); });
    await client.connect();
    const ack = await client.send("what is 6*7?");
    await waitFor(() => finals.has(ack.run_id), { what: "agent_completed" });
    const deltas = runEvents(events, ack.run_id).filter((e) => e.type === "agent_text_delta");
    assert.ok(deltas.length > 0, "the server sent no agent_text_delta");
    assert.equal(deltas[0].payload.message_id, deltas.at(-1).payload.message_id);
    assert.equal(growing.at(-1), finals.get(ack.run_id).text);
    client.close();
  });

  test("a bad token closes 4003, explained, and is not retried", async () => {
    const { Counted, made } = countingSocket();
    const client = new ChatgateClient(gateway.wsUrl, {
      token: mintToken("js-bad", { secret: "another-secret-0123456789abcdef-0123" }),
      WebSocket: Counted,
    });
    const closes = [];
    client.on("close", (close) => closes.push(close));
    await assert.rejects(client.connect(), { code: "auth_invalid" });
    assert.equal(closes.length, 1);
    const [close] = closes;
    assert.equal(close.code, 4003);
    assert.equal(close.slug, "auth_invalid");
    assert.equal(close.retry, "never");
    assert.equal(close.willReconnect, false);
    assert.match(close.explanation, /^The token was rejected .*What to do: get a valid token\.$/);
    assert.equal(made.length, 1);
  });

  test("an expired token closes 4004 and says to get a fresh one", async () => {
    const client = new ChatgateClient(gateway.wsUrl, {
      token: mintToken("js-old", { ttlS: -60 }),
    });
    const closes = [];
    client.on("close", (close) => closes.push(close));
    await assert.rejects(client.connect(), { code: "auth_expired" });
    assert.equal(closes[0].code, 4004);
    assert.match(closes[0].explanation, /get a fresh token, then reconnect/);
  });

  test("cancel ends the run with agent_completed status cancelled", async () => {
    const slow = new Gateway({ CHATGATE_DEMO_DELAY_MS: "2000" });
    await slow.start();
    try {
      const client = new ChatgateClient(slow.wsUrl, { token: mintToken("js-cancel") });
      const { events, finals } = record(client);
      await client.connect();
      const ack = await client.send("what is 6*7?");
      await waitFor(() => runEvents(events, ack.run_id).length > 0, { what: "agent_started" });
      await client.cancel(ack.run_id);
      await waitFor(() => finals.has(ack.run_id), { what: "agent_completed" });
      const run = runEvents(events, ack.run_id);
      assert.equal(run.at(-1).type, "agent_completed");
      assert.equal(run.at(-1).payload.status, "cancelled");
      assert.equal(finals.get(ack.run_id).status, "cancelled");
      assert.equal(run.filter((e) => e.type === "agent_completed").length, 1);
      client.close();
    } finally {
      await slow.stop();
    }
  });
});

describe("across a server restart", { skip: missing }, () => {
  const gateway = new Gateway({ CHATGATE_DEMO_DELAY_MS: "300" });
  before(() => gateway.start());
  after(() => gateway.stop());

  test("1012 on SIGTERM: reconnect, resume, every event once, then chat on", async () => {
    const client = new ChatgateClient(gateway.wsUrl, {
      token: mintToken("js-restart"), reconnect: { baseMs: 100, capMs: 1000, maxAttempts: 50 },
    });
    const { events, finals } = record(client);
    const closes = [];
    client.on("close", (close) => closes.push(close));
    await client.connect();
    const first = await client.send("what is 6*7?");
    await waitFor(() => runEvents(events, first.run_id).length > 0, { what: "agent_started" });
    await gateway.stop();
    assert.equal(closes[0].code, 1012);
    assert.equal(closes[0].slug, "service_restart");
    assert.equal(closes[0].retry, "now");
    assert.equal(closes[0].willReconnect, true);
    await gateway.start();
    await waitFor(() => client.reconnects >= 1 && client.connection !== null,
      { what: "the reconnection" });
    // The run of the stopped process ends once, whichever way: completed while draining,
    // or interrupted and ended by the restarted instance.
    await waitFor(() => runEvents(events, first.run_id).some(
      (e) => e.type === "agent_completed" || e.type === "agent_error"), { what: "the run's end" });
    const second = await client.send("what is 6*7?", { threadId: first.thread_id });
    assert.equal(second.thread_id, first.thread_id);
    await waitFor(() => finals.has(second.run_id), { what: "the second answer" });
    assert.match(finals.get(second.run_id).text, /42/);
    const ids = events.filter((e) => e.thread_id === first.thread_id).map((e) => e.event_id);
    assert.deepEqual(ids, [...new Set(ids)].sort((a, b) => a - b));
    const ends = runEvents(events, first.run_id).filter(
      (e) => e.type === "agent_completed" || e.type === "agent_error");
    assert.equal(ends.length, 1);
    client.close();
  });
});
