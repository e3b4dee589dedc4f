// The chat page: the chatgate client (./chatgate.js) and a view of the conversation.
//
// The token comes from the URL fragment (#token=..., removed from the address bar at
// once) or the token field, and stays in this tab's sessionStorage. So does the view:
// the thread on screen, the last event shown, and the run in flight, so that a reload
// reopens the thread (history, then resume) with every answer's text exactly once.
import { CLOSE_CODES, ChatgateClient, explainClose } from "./chatgate.js";

const TOKEN_KEY = "chatgate.token";
const VIEW_KEY = "chatgate.view";
const AUTH_SLUGS = new Set(["auth_required", "auth_invalid", "auth_expired", "e2e_not_enabled",
  "session_invalid"]);

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), problem: $("problem"), log: $("log"), composer: $("composer"),
  message: $("message"), send: $("send"), stop: $("stop"), tokenForm: $("token-form"),
  token: $("token"), threadList: $("thread-list"), noThreads: $("no-threads"),
  newThread: $("new-thread"),
};

const state = {
  client: null,
  connected: false,
  token: null,
  user: null,
  threadId: null, // the thread on screen; null: the next message starts one
  runs: new Map(), // run_id -> what the page knows of the run
  fromHistory: new Set(), // runs whose final answer the history gave: their events change nothing
  inFlight: null, // the run of the thread on screen that has not ended
  openRun: null, // {runId, after}: where a reload resumes the run in flight from
};

// Storage of this tab

function loadView() {
  try {
    return JSON.parse(sessionStorage.getItem(VIEW_KEY)) ?? {};
  } catch {
    return {};
  }
}

function saveView() {
  const lastEventId = state.threadId ? state.client?.lastEventId(state.threadId) ?? null : null;
  sessionStorage.setItem(VIEW_KEY, JSON.stringify({
    user: state.client?.connection?.user_id ?? null, threadId: state.threadId, lastEventId,
    openRun: state.openRun,
  }));
}

function tokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("token");
  if (token !== null) {
    // Out of the address bar, the history and any screenshot.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return token;
}

// Status and problems

function setStatus(text, tone = "") {
  ui.status.textContent = text;
  ui.status.className = `status ${tone}`.trim();
}

function showProblem(text) {
  ui.problem.textContent = text;
  ui.problem.hidden = false;
}

function hideProblem() {
  ui.problem.hidden = true;
  ui.problem.textContent = "";
}

function explainSlug(slug, message) {
  const code = Object.keys(CLOSE_CODES).find((c) => CLOSE_CODES[c].slug === slug);
  return code ? explainClose(Number(code), `${slug}: ${message ?? ""}`).explanation
    : `${message ?? "The request failed"} (${slug}).`;
}

function describe(error) {
  if (error?.close) return error.close.explanation;
  if (error?.code === "message_not_confirmed") {
    return "The connection dropped before the server confirmed your message; " +
      "it may or may not have arrived. Look at the thread before sending it again.";
  }
  return `${error?.message ?? error}`;
}

// Rendering

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function keepScrolled(update) {
  const { log } = ui;
  const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  update();
  if (atEnd) log.scrollTop = log.scrollHeight;
}

function appendUser(text) {
  const article = element("article", "message user");
  article.append(element("p", "who", "You"), element("p", "answer", text));
  keepScrolled(() => ui.log.append(article));
  return article;
}

function runOf(runId, threadId) {
  let run = state.runs.get(runId);
  if (!run) {
    run = { runId, threadId, text: "", thinking: "", tools: new Map(), final: false,
      status: null, error: null, node: null };
    state.runs.set(runId, run);
  }
  return run;
}

function renderRun(run) {
  if (run.threadId !== state.threadId) return;
  if (!run.node || !run.node.isConnected) {
    run.node = element("article", "message agent");
    run.node.dataset.run = run.runId;
    run.node.append(element("p", "who", "Agent"), element("p", "thinking"),
      element("div", "tools"), element("p", "answer"), element("p", "note"));
    keepScrolled(() => ui.log.append(run.node));
  }
  const [, thinking, tools, answer, note] = run.node.children;
  keepScrolled(() => {
    thinking.textContent = run.final ? "" : run.thinking;
    thinking.hidden = !thinking.textContent;
    renderTools(tools, run);
    answer.textContent = run.text;
    run.node.classList.toggle("pending", !run.final);
    renderNote(note, run);
  });
}

function renderTools(container, run) {
  for (const [id, tool] of run.tools) {
    let box = container.querySelector(`[data-tool="${CSS.escape(id)}"]`);
    if (!box) {
      box = element("div", "tool");
      box.dataset.tool = id;
      const call = element("div");
      call.append(element("span", "", "Tool "), element("span", "tool-name", tool.name),
        element("code", "tool-arguments", ` ${JSON.stringify(tool.arguments ?? {})}`));
      box.append(call, element("pre", "tool-result"));
      container.append(box);
    }
    const result = box.querySelector(".tool-result");
    if (tool.error) result.textContent = `error: ${tool.error}`;
    else if (tool.done) result.textContent = `→ ${JSON.stringify(tool.result)}`;
    else result.textContent = "running…";
  }
}

function renderNote(note, run) {
  note.className = "note";
  if (run.error) {
    note.className = "note error";
    note.textContent = `The agent failed (${run.error.code}): ${run.error.message}` +
      (run.error.correlation_id ? ` [correlation id ${run.error.correlation_id}]` : "");
  } else if (run.status === "cancelled") {
    note.textContent = "Stopped.";
  } else {
    note.textContent = "";
  }
  note.hidden = !note.textContent;
}

function updateControls() {
  const running = state.inFlight !== null;
  ui.stop.hidden = !running;
  ui.send.disabled = running || !state.connected;
}

// Events of the socket

function onEvent(event) {
  if (!event.run_id || state.fromHistory.has(event.run_id)) {
    if (event.thread_id === state.threadId) saveView();
    return;
  }
  const run = runOf(event.run_id, event.thread_id);
  const { payload } = event;
  switch (event.type) {
    case "agent_started":
      if (event.thread_id === state.threadId && !run.final) {
        state.inFlight = run.runId;
        state.openRun = { runId: run.runId, after: event.event_id - 1 };
      }
      break;
    case "agent_thinking":
      run.thinking = payload.text ?? "";
      break;
    case "tool_executing":
      run.tools.set(toolKey(run, payload, false), { name: payload.tool_name,
        arguments: payload.arguments, done: false });
      break;
    case "tool_completed": {
      const key = toolKey(run, payload, true);
      const tool = run.tools.get(key) ?? { name: payload.tool_name, arguments: null };
      run.tools.set(key, { ...tool, done: true, result: payload.result, error: payload.error });
      break;
    }
    case "agent_completed":
      run.text = payload.text ?? run.text;
      run.status = payload.status ?? "completed";
      run.final = true;
      break;
    case "agent_error":
      run.error = payload;
      run.final = true;
      break;
    default:
      break;
  }
  if (run.final) endRun(run);
  renderRun(run);
  if (event.thread_id === state.threadId) saveView();
}

function toolKey(run, payload, completing) {
  if (payload.tool_call_id) return payload.tool_call_id;
  // Without ids, a result belongs to the oldest call of that tool still running.
  const open = [...run.tools].find(([, t]) => t.name === payload.tool_name && !t.done);
  return completing && open ? open[0] : `${payload.tool_name}#${run.tools.size}`;
}

function endRun(run) {
  if (state.inFlight === run.runId) state.inFlight = null;
  if (state.openRun?.runId === run.runId) state.openRun = null;
  updateControls();
  refreshThreads();
}

function onText(update) {
  if (!update.run_id || state.fromHistory.has(update.run_id)) return;
  const run = runOf(update.run_id, update.thread_id);
  if (run.final && !update.final) return;
  run.text = update.text;
  renderRun(run);
}

function onClose(close) {
  if (close.byClient) return;
  state.connected = false;
  updateControls();
  if (close.willReconnect) {
    setStatus(`Reconnecting: ${close.explanation}`, "down");
    return;
  }
  setStatus("Disconnected", "down");
  state.inFlight = null;
  updateControls();
  if (AUTH_SLUGS.has(close.slug)) {
    sessionStorage.removeItem(TOKEN_KEY);
    showProblem(`Your token was not accepted. ${close.explanation}`);
    ui.tokenForm.hidden = false;
    ui.token.focus();
  } else {
    showProblem(`The connection closed. ${close.explanation}`);
  }
}

// The history API

async function api(path) {
  const answer = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (answer.ok) return answer.json();
  let body = {};
  try {
    body = await answer.json();
  } catch {
    // Not JSON: a proxy's page.
  }
  showProblem(explainSlug(body.error ?? `http_${answer.status}`, body.message));
  return null;
}

async function refreshThreads() {
  if (!state.token) return;
  const found = await api("/api/threads");
  if (!found) return;
  ui.threadList.replaceChildren(...found.threads.map((thread) => {
    const item = element("li");
    const button = element("button", "", thread.title || "Untitled thread");
    button.type = "button";
    button.title = `Updated ${thread.updated_at}`;
    button.dataset.thread = thread.thread_id;
    button.setAttribute("aria-current", String(thread.thread_id === state.threadId));
    button.addEventListener("click", () => openThread(thread.thread_id).catch(fail));
    item.append(button);
    return item;
  }));
  ui.noThreads.hidden = found.threads.length > 0;
}

function markCurrentThread() {
  for (const button of ui.threadList.querySelectorAll("button")) {
    button.setAttribute("aria-current", String(button.dataset.thread === state.threadId));
  }
}

/**
 * Show a thread: its history, then what this page knows of runs the history does not
 * have yet, then follow it live from `after` (or from the start when never followed).
 */
async function openThread(threadId, { after = null } = {}) {
  state.threadId = threadId;
  state.inFlight = null;
  ui.log.replaceChildren();
  markCurrentThread();
  updateControls();
  const history = await api(`/api/threads/${encodeURIComponent(threadId)}/messages`);
  if (state.threadId !== threadId) return;
  if (!history) {
    newThread();
    return;
  }
  for (const message of history.messages) {
    if (message.role === "user") {
      appendUser(message.content);
    } else if (message.run_id) {
      const known = state.runs.get(message.run_id);
      if (!known?.final) {
        state.fromHistory.add(message.run_id);
        state.runs.set(message.run_id, { ...runOf(message.run_id, threadId),
          text: message.content, final: true, status: "completed", node: null });
      }
      renderRun(state.runs.get(message.run_id));
    }
  }
  for (const run of state.runs.values()) {
    if (run.threadId !== threadId || state.fromHistory.has(run.runId)) continue;
    if (!run.final) state.inFlight = run.runId;
    renderRun(run);
  }
  updateControls();
  saveView();
  const client = state.client;
  if (after !== null || !client.threads.includes(threadId)) {
    await client.resume(threadId, after ?? 0);
  }
}

function newThread() {
  state.threadId = null;
  state.inFlight = null;
  state.openRun = null;
  ui.log.replaceChildren();
  markCurrentThread();
  updateControls();
  saveView();
  ui.message.focus();
}

async function sendMessage() {
  const text = ui.message.value.trim();
  if (!text || !state.client || state.inFlight) return;
  hideProblem();
  ui.message.value = "";
  const bubble = appendUser(text);
  const threadId = state.threadId;
  ui.send.disabled = true;
  try {
    const ack = await state.client.send(text, { threadId });
    if (state.threadId === threadId) {
      state.threadId = ack.thread_id;
      if (!state.runs.get(ack.run_id)?.final) {
        state.inFlight = ack.run_id;
        const before = state.client.lastEventId(ack.thread_id) ?? 0;
        state.openRun ??= { runId: ack.run_id, after: before };
      }
      saveView();
    }
    refreshThreads();
  } catch (error) {
    bubble.classList.add("failed");
    showProblem(describe(error));
  } finally {
    updateControls();
  }
}

// Starting

function fail(error) {
  showProblem(describe(error));
}

async function start(token) {
  state.client?.close();
  hideProblem();
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.tokenForm.hidden = true;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const client = new ChatgateClient(`${scheme}://${window.location.host}/ws`, { token });
  state.client = client;
  client.on("event", onEvent);
  client.on("text", onText);
  client.on("close", onClose);
  client.on("open", (established) => {
    state.connected = true;
    setStatus(`Connected as ${established.user_id}`, "ok");
    updateControls();
  });
  client.on("error", (frame) => {
    showProblem(`The server refused a request: ${frame.payload.message} ` +
      `(${frame.payload.code}).`);
  });
  setStatus("Connecting…");
  try {
    await client.connect();
  } catch {
    return; // The close handler has said why.
  }
  await refreshThreads();
  const view = loadView();
  // A view saved under another user's token names threads this user cannot open.
  if (view.threadId && view.user === client.connection.user_id) {
    state.openRun = view.openRun ?? null;
    const after = state.openRun ? state.openRun.after : view.lastEventId ?? 0;
    await openThread(view.threadId, { after });
  }
}

function main() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage().catch(fail);
  });
  ui.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  ui.stop.addEventListener("click", () => {
    if (state.inFlight) state.client.cancel(state.inFlight).catch(fail);
  });
  ui.newThread.addEventListener("click", newThread);
  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.token.value.trim();
    ui.token.value = "";
    if (token) start(token).catch(fail);
  });
  updateControls();
  const token = tokenFromFragment() ?? sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    start(token).catch(fail);
  } else {
    setStatus("Not connected");
    ui.tokenForm.hidden = false;
    ui.token.focus();
  }
}

main();
