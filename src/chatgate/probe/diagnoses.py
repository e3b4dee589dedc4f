"""The diagnoses table: for each way a connection can fail, its most likely cause and next step.

Pure data and lookups, no I/O. Close codes, their slugs and meanings come from
:data:`chatgate.closecodes.CLOSE_CODES`; this table only adds what an operator
should suspect and do, keyed by :class:`~chatgate.closecodes.CloseCode`.
Every other cause is keyed by a stable name, the JSON report's ``cause``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatgate.closecodes import CLOSE_CODES, CloseCode


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A cause's stable name, the most likely explanation, and what to do next."""

    cause: str
    likely: str
    next_step: str


_CLOSE_HINTS: dict[CloseCode, tuple[str, str]] = {
    CloseCode.NORMAL: (
        "the server ended the session on purpose where the probe expected it to go on",
        "look for the connection id in the server log",
    ),
    CloseCode.INVALID_PAYLOAD: (
        "the client sent a text frame that is not valid UTF-8, or a proxy altered the frames",
        "check how the client encodes text frames and any proxy that rewrites WebSocket traffic",
    ),
    CloseCode.MESSAGE_TOO_BIG: (
        "a frame was larger than CHATGATE_MAX_MESSAGE_BYTES (announced as max_message_bytes)",
        "send smaller frames, or raise CHATGATE_MAX_MESSAGE_BYTES",
    ),
    CloseCode.INTERNAL_ERROR: (
        "a bug in the server, or a dependency failing in a way the server did not expect",
        "find the cid= of the reason in the server log: that line carries the traceback",
    ),
    CloseCode.SERVICE_RESTART: (
        (
            "the instance is draining after SIGTERM: a deploy, a scale-in, or the platform "
            "recycling it"
        ),
        "reconnect at once; if it happens often, check deploys and CHATGATE_DRAIN_TIMEOUT_S",
    ),
    CloseCode.TRY_AGAIN_LATER: (
        "a dependency (store, broker or JWKS endpoint) is down, or the server is overloaded",
        "read /readyz; check CHATGATE_DATABASE_URL, CHATGATE_BROKER_URL, CHATGATE_JWKS_URL",
    ),
    CloseCode.BAD_REQUEST: (
        ("the client broke the handshake or RFC 6455 (a bad frame), or a proxy altered the frames"),
        "check the client library and any proxy that rewrites WebSocket traffic",
    ),
    CloseCode.AUTH_REQUIRED: (
        (
            "no credential reached the server: a proxy stripped the Authorization header, or no "
            "auth message came within CHATGATE_AUTH_TIMEOUT_S"
        ),
        "make proxies forward Authorization, or present the token as subprotocol bearer.<jwt>",
    ),
    CloseCode.AUTH_INVALID: (
        (
            "the token was signed with another key than the server's CHATGATE_JWT_SECRET (or "
            "public key), or its algorithm, issuer or audience do not match "
            "CHATGATE_JWT_ALGORITHMS, CHATGATE_JWT_ISSUER, CHATGATE_JWT_AUDIENCE"
        ),
        (
            "compare the token issuer's signing key and claims with the server's settings; the "
            "reason names the check that failed"
        ),
    ),
    CloseCode.AUTH_EXPIRED: (
        "the token's exp is in the past, or the issuer's clock is ahead of the server's",
        "mint a fresh token and check the clocks",
    ),
    CloseCode.E2E_NOT_ENABLED: (
        (
            "a test token was used where E2E mode is off: production, or staging with "
            "DISABLE_ENHANCED_E2E_DETECTION=1 and no E2E_TESTING=1"
        ),
        (
            "read /diagnostics (e2e.enabled, detection_method); outside production set "
            "E2E_TESTING=1 or remove the rollback flag"
        ),
    ),
    CloseCode.ORIGIN_DENIED: (
        (
            "the Origin header is not in CHATGATE_ALLOWED_ORIGINS (by default only the request's "
            "own host is allowed)"
        ),
        "add the page's origin to CHATGATE_ALLOWED_ORIGINS",
    ),
    CloseCode.SESSION_INVALID: (
        (
            "the token's sub is empty, too long, holds control characters, or starts with e2e: "
            "on a token that is not a test token"
        ),
        "fix the claims the token issuer writes",
    ),
    CloseCode.TOO_MANY_ERRORS: (
        "the client kept sending invalid frames",
        "fix the client; the error frames before the close say what was wrong",
    ),
    CloseCode.CONNECTION_LIMIT: (
        (
            "this user already has CHATGATE_MAX_CONNECTIONS_PER_USER sockets open (leaked tabs "
            "or clients that never close)"
        ),
        "close other connections of this user, or raise the limit",
    ),
    CloseCode.RATE_LIMITED: (
        (
            "the client sent more than CHATGATE_RATE_LIMIT_MESSAGES frames per "
            "CHATGATE_RATE_LIMIT_WINDOW_S"
        ),
        "slow the client down; reconnect after a backoff",
    ),
    CloseCode.HEARTBEAT_TIMEOUT: (
        (
            "the client did not answer WebSocket pings within CHATGATE_HEARTBEAT_TIMEOUT_S (a "
            "blocked event loop, or a proxy that drops control frames)"
        ),
        "keep the client's event loop responsive; check proxies between client and server",
    ),
    CloseCode.SLOW_CONSUMER: (
        "the client read slower than the server sent, past CHATGATE_SEND_QUEUE_BYTES",
        "read frames promptly; reconnect and resume",
    ),
}

_HTTP_HINTS: dict[int, tuple[str, str, str]] = {
    400: (
        "http_400",
        (
            "the upgrade request was malformed, or a proxy removed its Upgrade/Connection headers "
            '(nginx needs proxy_set_header Upgrade $http_upgrade and Connection "upgrade")'
        ),
        "check the proxy's WebSocket settings; try the socket URL on the server directly",
    ),
    403: (
        "http_403",
        (
            "something in front of the gateway refused the upgrade: a WAF or Cloud Armor, IAP, "
            "Cloud Run without --allow-unauthenticated, or an ingress policy (the gateway "
            "itself never answers 403 on its socket path)"
        ),
        "the headers show who answered (server, via); allow WebSocket upgrades there",
    ),
    404: (
        "wrong_path",
        "nothing serves WebSockets at this path: the gateway's socket is /ws",
        "use the /ws path; check path rewrites in proxies",
    ),
    426: (
        "http_426",
        (
            "a proxy or load balancer in front does not pass WebSocket upgrades (HTTP/2 only, "
            "or an HTTP/1.0 hop)"
        ),
        "enable WebSocket (HTTP/1.1 Upgrade) on the proxy or load balancer",
    ),
    502: (
        "http_502",
        (
            "the load balancer or proxy could not get an answer from a gateway backend: crashed, "
            "still starting, the wrong port, or a backend that does not speak HTTP/1.1"
        ),
        "check the backend's /healthz and /readyz and the load balancer's backend logs",
    ),
    503: (
        "http_503",
        (
            "no backend is available: none passes /readyz, all are draining, or the service "
            "is scaled to zero or overloaded"
        ),
        "read /readyz and the instance count; look for a deploy in progress",
    ),
}

CAUSES: dict[str, tuple[str, str]] = {
    "wrong_path": (
        "the gateway answers here, but not at this path: its socket is /ws",
        "use the /ws path; check path rewrites in proxies",
    ),
    "dns_failure": (
        "the host name does not resolve",
        "check the URL's host (or STAGING_HOST) and the DNS records",
    ),
    "connection_refused": (
        "nothing listens at this host and port: the server is down, or the port is wrong",
        "start the server, or fix the port (CHATGATE_PORT / PORT)",
    ),
    "tls_error": (
        (
            "the TLS handshake failed: a certificate that is invalid, expired or for another "
            "name, or wss:// against a plain-HTTP port"
        ),
        "check the certificate; use ws:// for a port without TLS",
    ),
    "timeout": (
        (
            "no answer in time: a firewall dropping packets, an overloaded server, or a proxy "
            "holding the request"
        ),
        "check the network path and the server's load; raise --timeout to tell slow from dead",
    ),
    "handshake_failed": (
        (
            "the answer was not a WebSocket upgrade: another service on the port, or a proxy "
            "closing the connection"
        ),
        "check what listens at this URL (curl -i it)",
    ),
    "network_error": (
        "the network failed under the connection (reset, unreachable)",
        "check routes and firewalls between the probe and the server",
    ),
    "http_error": (
        "the upgrade was answered with an HTTP status instead of 101",
        "the headers show who answered; check that hop's WebSocket settings",
    ),
    "abnormal_closure": (
        (
            "the connection dropped without a close frame: a proxy or load balancer cut it, or "
            "the server process died"
        ),
        (
            "compare the timing with the timeouts of every hop in front of the gateway; check "
            "for server restarts"
        ),
    ),
    "lb_backend_timeout": (
        (
            "a Google Cloud load balancer's backend service timeout (30 s by default) ends every "
            "WebSocket that lives longer"
        ),
        "raise it: gcloud compute backend-services update BACKEND --timeout=3600",
    ),
    "proxy_idle_timeout": (
        (
            "a proxy's idle timeout cut a quiet connection: 60 s is the default of nginx "
            "proxy_read_timeout and of AWS load balancers, 100 s is Cloudflare's"
        ),
        "set CHATGATE_HEARTBEAT_INTERVAL_S below the idle timeout, or raise the proxy's",
    ),
    "cloud_run_request_timeout": (
        "Cloud Run's request timeout ends every WebSocket (300 s by default, at most 3600 s)",
        "raise the service's --timeout (up to 3600) and let clients reconnect and resume",
    ),
    "unexpected_frame": (
        "the server sent a frame the protocol does not allow here",
        "compare the server's version with the protocol the client expects",
    ),
    "subprotocol_not_selected": (
        (
            "the answer did not select the offered chatgate.v1: a proxy rewrote the handshake, "
            "or the server is not chatgate"
        ),
        "check proxies for Sec-WebSocket-Protocol handling",
    ),
    "token_echoed": (
        "the handshake answer carries the token: it may end up in logs and caches",
        "fix the server or proxy that echoes Sec-WebSocket-Protocol verbatim",
    ),
    "wrong_user": (
        "the session's user is not the token's subject",
        "check the token's sub claim and the server's session rules",
    ),
    "missing_events": (
        (
            "the run did not send every agent event: agent_started, agent_thinking, "
            "tool_executing, tool_completed, agent_completed"
        ),
        "check the agent (CHATGATE_AGENT) and the server log for the run id",
    ),
    "events_out_of_order": (
        "the run's events came out of order, or their ids do not rise by one",
        "check the store's event numbering and the broker's ordering",
    ),
    "text_mismatch": (
        "the run's agent_text_delta pieces, placed at their offsets, do not make its answer",
        "check the agent's deltas and the server's offsets (code points, not bytes)",
    ),
    "missing_ids": (
        "an event lacks its thread_id, run_id or event_id",
        "check the server's event envelope",
    ),
    "agent_failed": (
        "the agent raised an exception; the gateway reported it as agent_error",
        "find the correlation_id in the server log: that line carries the traceback",
    ),
    "run_interrupted": (
        "the process running the agent died in the middle of the run",
        "check the server's restarts and memory limits",
    ),
    "agent_error": (
        "the run ended with agent_error",
        "find the correlation_id in the server log",
    ),
    "resume_incomplete": (
        "the resume did not return every missed event exactly once, through the end of the run",
        "check the event log in the store (CHATGATE_DATABASE_URL) and the resume path",
    ),
    "e2e_mismatch": (
        "whether a test token is accepted disagrees with the E2E state /diagnostics reports",
        "read /diagnostics e2e.detection_method; restart after changing E2E settings",
    ),
    "e2e_in_production": (
        "E2E test mode is on (or a test token was accepted) in the production tier",
        (
            "check ENVIRONMENT, K_SERVICE and GOOGLE_CLOUD_PROJECT: the tier must be production "
            "there, and E2E mode must never be on in it"
        ),
    ),
    "e2e_key_mismatch": (
        (
            "E2E mode is on, but the test token was rejected: the probe's key is not the "
            "server's E2E_OAUTH_SIMULATION_KEY, or the server has none"
        ),
        "use the same E2E_OAUTH_SIMULATION_KEY as the server; the reason says which",
    ),
    "e2e_policy_inconsistent": (
        "the tier and the E2E state /diagnostics reports contradict the rules of the contract",
        "report it: the tier detector and the E2E policy disagree",
    ),
    "test_headers_granted": (
        "test-marking headers alone got a session: headers must grant nothing",
        "report it as a security bug",
    ),
    "diagnostics_unavailable": (
        (
            "/diagnostics does not answer with the documented JSON: an older server, or a proxy "
            "that does not route it"
        ),
        "check the server version and the proxy's routes",
    ),
    "diagnostics_forbidden": (
        "/diagnostics refused the admin token",
        "use the server's CHATGATE_ADMIN_TOKEN",
    ),
    "store_unavailable": (
        "the store does not answer: /readyz names it as failing",
        "check CHATGATE_DATABASE_URL: the database's reachability, credentials and disk",
    ),
    "broker_unavailable": (
        "the broker does not answer: /readyz names it as failing",
        "check CHATGATE_BROKER_URL: Redis's reachability and memory",
    ),
    "health_failed": (
        "/healthz or /readyz did not answer 200",
        "read the body of /readyz: it names each failing dependency",
    ),
    "history_missing": (
        "the history API does not show the thread's exchanges",
        "check GET /api/threads/{id}/messages and the store",
    ),
    "isolation_breach": (
        "a user saw another user's frame or thread",
        "report it as a security bug: check the broker's per-user routing",
    ),
    "not_rejected": (
        "a socket that must be refused was accepted",
        "report it as a security bug",
    ),
    "wrong_error": (
        "the server answered with another error than the protocol requires",
        "compare the server's version with docs/protocol.md",
    ),
    "limit_not_enforced": (
        "a limit of docs/protocol.md section 6 was not enforced",
        "check the server's CHATGATE_* limit settings",
    ),
    "too_slow": (
        "the server answered, but slower than the budget",
        "check the server's load, the agent's latency and the network round trip",
    ),
}

KNOWN_LIMITS: tuple[tuple[float, str, str], ...] = (
    (30.0, "since_open", "lb_backend_timeout"),
    (60.0, "idle", "proxy_idle_timeout"),
    (100.0, "idle", "proxy_idle_timeout"),
    (300.0, "since_open", "cloud_run_request_timeout"),
    (3600.0, "since_open", "cloud_run_request_timeout"),
)
"""Timeouts of common hops: (seconds, what they count from, cause)."""


def close_diagnosis(code: int) -> Diagnosis | None:
    """The diagnosis of a close code of the table, or None for another code."""
    try:
        member = CloseCode(code)
    except ValueError:
        return None
    likely, next_step = _CLOSE_HINTS[member]
    return Diagnosis(CLOSE_CODES[member].slug, likely, next_step)


def http_diagnosis(status: int) -> Diagnosis:
    """The diagnosis of an HTTP status answering the upgrade."""
    hint = _HTTP_HINTS.get(status)
    if hint is not None:
        return Diagnosis(*hint)
    likely, next_step = CAUSES["http_error"]
    return Diagnosis(f"http_{status}", likely, next_step)


def diagnosis(cause: str) -> Diagnosis:
    """The diagnosis of a named cause, or of a close code by its slug.

    Raises:
        KeyError: ``cause`` is in neither table.
    """
    if cause in CAUSES:
        likely, next_step = CAUSES[cause]
        return Diagnosis(cause, likely, next_step)
    for code, row in CLOSE_CODES.items():
        if row.slug == cause:
            likely, next_step = _CLOSE_HINTS[code]
            return Diagnosis(cause, likely, next_step)
    raise KeyError(cause)


def _matches(elapsed_s: float, limit_s: float) -> bool:
    """Whether ``elapsed_s`` is "about" ``limit_s``: a little before, or somewhat after it."""
    return limit_s - max(1.5, 0.05 * limit_s) <= elapsed_s <= limit_s + max(3.0, 0.05 * limit_s)


def drop_diagnosis(since_open_s: float | None, idle_s: float | None) -> Diagnosis:
    """The diagnosis of a connection that dropped without a close frame (1006).

    A drop about 30, 300 or 3600 s after the upgrade, or about 60 or 100 s
    after the last frame, matches a known timeout of a hop in front.
    """
    for limit_s, counted_from, cause in KNOWN_LIMITS:
        elapsed = since_open_s if counted_from == "since_open" else idle_s
        if elapsed is not None and _matches(elapsed, limit_s):
            return diagnosis(cause)
    return diagnosis("abnormal_closure")


def close_meaning(code: int) -> str:
    """What the close-code table says a code means, or a note for a code it does not hold."""
    try:
        return CLOSE_CODES[CloseCode(code)].explanation
    except ValueError:
        return "a code that is not in the close-code table"
