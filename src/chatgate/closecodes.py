"""The close-code table of the wire contract, once, as data.

The server, the probe, the client SDK and the docs all read this table; no
other module spells a close code or slug.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_REASON_BYTES = 123
"""RFC 6455 leaves 123 bytes for the reason in a close frame."""


class CloseCode(enum.IntEnum):
    """Every close code the server may send."""

    NORMAL = 1000
    INVALID_PAYLOAD = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4000
    AUTH_REQUIRED = 4001
    AUTH_INVALID = 4003
    AUTH_EXPIRED = 4004
    E2E_NOT_ENABLED = 4005
    ORIGIN_DENIED = 4006
    SESSION_INVALID = 4007
    TOO_MANY_ERRORS = 4009
    CONNECTION_LIMIT = 4010
    RATE_LIMITED = 4100
    HEARTBEAT_TIMEOUT = 4101
    SLOW_CONSUMER = 4102


class Retry(enum.Enum):
    """What a client should do after a close."""

    NEVER = "never"
    """Do not retry as is: fix the client, the token or the configuration."""
    BACKOFF = "backoff"
    """Retry with full-jitter exponential backoff."""
    NOW = "now"
    """Retry at once (the server is draining)."""


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """One row of the table: the slug, what it means and what a client should do."""

    code: CloseCode
    slug: str
    explanation: str
    advice: str
    retry: Retry


CLOSE_CODES: dict[CloseCode, CloseInfo] = {
    info.code: info
    for info in (
        CloseInfo(
            CloseCode.NORMAL, "normal", "the connection ended normally", "nothing", Retry.NEVER
        ),
        CloseInfo(
            CloseCode.INVALID_PAYLOAD,
            "invalid_payload",
            "a text frame that is not valid UTF-8",
            "fix the client",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.MESSAGE_TOO_BIG,
            "message_too_big",
            "a frame exceeded the maximum message size",
            "do not resend that message",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.INTERNAL_ERROR,
            "internal_error",
            "a bug in the server; the reason carries the correlation id of its log line",
            "reconnect with backoff; report the cid",
            Retry.BACKOFF,
        ),
        CloseInfo(
            CloseCode.SERVICE_RESTART,
            "service_restart",
            "the server is draining (SIGTERM)",
            "reconnect now",
            Retry.NOW,
        ),
        CloseInfo(
            CloseCode.TRY_AGAIN_LATER,
            "try_again_later",
            "a dependency is down, or the server is overloaded",
            "reconnect with backoff",
            Retry.BACKOFF,
        ),
        CloseInfo(
            CloseCode.BAD_REQUEST,
            "bad_request",
            "bad handshake or unsupported protocol",
            "fix the client",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.AUTH_REQUIRED,
            "auth_required",
            "no credential came, or none within the auth timeout",
            "send a credential",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.AUTH_INVALID,
            "auth_invalid",
            "the token was rejected (signature, algorithm, issuer, audience, format)",
            "get a valid token",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.AUTH_EXPIRED,
            "auth_expired",
            "the token has expired",
            "get a fresh token, then reconnect",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.E2E_NOT_ENABLED,
            "e2e_not_enabled",
            "a test token was used where E2E test mode is off",
            "do not use test tokens here",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.ORIGIN_DENIED,
            "origin_denied",
            "the Origin header is not allowed",
            "connect from an allowed origin (CHATGATE_ALLOWED_ORIGINS)",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.SESSION_INVALID,
            "session_invalid",
            "no session could be built from the token's claims",
            "fix the claims the session was built from",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.TOO_MANY_ERRORS,
            "too_many_errors",
            "the client sent repeated invalid messages",
            "fix the client",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.CONNECTION_LIMIT,
            "connection_limit",
            "the user has too many open connections",
            "close other connections of this user first",
            Retry.NEVER,
        ),
        CloseInfo(
            CloseCode.RATE_LIMITED,
            "rate_limited",
            "the client kept sending past the rate limit",
            "reconnect after a backoff",
            Retry.BACKOFF,
        ),
        CloseInfo(
            CloseCode.HEARTBEAT_TIMEOUT,
            "heartbeat_timeout",
            "the client did not answer the heartbeat in time",
            "reconnect with backoff",
            Retry.BACKOFF,
        ),
        CloseInfo(
            CloseCode.SLOW_CONSUMER,
            "slow_consumer",
            "the client read too slowly and its send queue overflowed",
            "reconnect with backoff, read faster",
            Retry.BACKOFF,
        ),
    )
}


def info(code: int) -> CloseInfo | None:
    """Return the table row for ``code``, or None for a code not in the table."""
    try:
        return CLOSE_CODES[CloseCode(code)]
    except ValueError:
        return None


def close_reason(code: CloseCode, detail: str = "") -> str:
    """Build the ``"<slug>: <detail>"`` reason, cut to fit the 123-byte limit.

    The cut never splits a UTF-8 sequence.
    """
    slug = CLOSE_CODES[code].slug
    reason = f"{slug}: {detail}" if detail else slug
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode(errors="ignore")


def parse_reason(reason: str) -> tuple[str, str]:
    """Split a close reason into ``(slug, detail)``; the detail may be empty."""
    slug, _, detail = reason.partition(":")
    return slug.strip(), detail.strip()
