// Test support: a real `chatgate serve` process on a free port, HS256 tokens, waiting.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = "js-client-test-secret-0123456789abcdef";
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const OWNED = ["CHATGATE_", "E2E_"];
const PLATFORM = new Set(["ENVIRONMENT", "GOOGLE_CLOUD_PROJECT", "K_SERVICE", "PORT",
  "DISABLE_ENHANCED_E2E_DETECTION", "KUBERNETES_SERVICE_HOST"]);

/** The chatgate executable: $CHATGATE_TEST_BIN, or the repository's virtualenv. */
export function chatgateBin() {
  return process.env.CHATGATE_TEST_BIN ?? join(REPO, ".venv", "bin", "chatgate");
}

/** Whether a chatgate executable is there to test against. */
export function haveGateway() {
  return existsSync(chatgateBin());
}

/** Wait until `condition()` holds (polling), or fail after `timeoutMs`. */
export async function waitFor(condition, { timeoutMs = 15000, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => { setTimeout(done, 10); });
  }
}

/** A TCP port nothing listens on right now. */
export function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function b64url(value) {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value))
    .toString("base64url");
}

/** An HS256 JWT for `sub`, valid `ttlS` seconds (negative: already expired). */
export function mintToken(sub, { secret = SECRET, ttlS = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ sub, iat: now, exp: now + ttlS })}`;
  const signature = createHmac("sha256", secret).update(head).digest("base64url");
  return `${head}.${signature}`;
}

function cleanEnv(variables) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!OWNED.some((prefix) => name.startsWith(prefix)) && !PLATFORM.has(name)) env[name] = value;
  }
  return { ...env, ...variables };
}

/**
 * A `chatgate serve` child: start() waits for /healthz, stop() sends SIGTERM and waits.
 * The store is a SQLite file in its own directory, so a restart keeps the threads.
 */
export class Gateway {
  constructor(variables = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "chatgate-js-"));
    this.variables = {
      ENVIRONMENT: "development",
      CHATGATE_JWT_SECRET: SECRET,
      CHATGATE_DATABASE_URL: `sqlite:///${join(this.dir, "chat.db")}`,
      CHATGATE_AGENT: "demo",
      CHATGATE_LOG_FORMAT: "json",
      ...variables,
    };
    this.port = null;
    this.child = null;
    this.starts = 0;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start the process (on the same port as before, after a stop) and wait until it serves. */
  async start() {
    this.port ??= await freePort();
    this.starts += 1;
    const log = openSync(join(this.dir, `server-${this.starts}.log`), "w");
    this.child = spawn(chatgateBin(), ["serve", "--port", String(this.port)], {
      cwd: this.dir, env: cleanEnv(this.variables), stdio: ["ignore", log, log],
    });
    const child = this.child;
    let exited = null;
    child.on("exit", (code) => { exited = code; });
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      if (exited !== null) throw new Error(`gateway exited with ${exited}: ${this.output()}`);
      try {
        const answer = await fetch(`${this.httpUrl}/healthz`);
        if (answer.status === 200) return this;
      } catch {
        // Not listening yet.
      }
      await new Promise((done) => { setTimeout(done, 50); });
    }
    throw new Error(`gateway did not become healthy: ${this.output()}`);
  }

  /** SIGTERM (the server drains: open sockets close with 1012); wait for the exit. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => { child.on("exit", done); });
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
    await exited;
    clearTimeout(timer);
  }

  output() {
    let text = "";
    for (let i = 1; i <= this.starts; i += 1) {
      try {
        text += readFileSync(join(this.dir, `server-${i}.log`), "utf8");
      } catch {
        // Not written yet.
      }
    }
    return text;
  }
}
