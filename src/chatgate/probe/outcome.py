"""What a scenario or a check found: a pass, a skip, or a failure with its diagnosis."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from chatgate.client.errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    ServerClosed,
    UnexpectedFrame,
)
from chatgate.probe.diagnoses import (
    Diagnosis,
    close_diagnosis,
    close_meaning,
    diagnosis,
    drop_diagnosis,
    http_diagnosis,
)

TELLING_HEADERS = (
    "server",
    "via",
    "content-type",
    "www-authenticate",
    "retry-after",
    "location",
    "x-cloud-trace-context",
    "x-served-by",
    "cf-ray",
    "x-amzn-trace-id",
    "x-envoy-upstream-service-time",
    "x-request-id",
)
"""Response headers that show which hop answered an upgrade, and why."""

_BODY_CHARS = 200

_CONNECT_WORDS = {
    FailureKind.DNS: "the name does not resolve",
    FailureKind.REFUSED: "connection refused",
    FailureKind.TLS: "the TLS handshake failed",
    FailureKind.TIMEOUT: "timed out",
    FailureKind.HANDSHAKE: "the upgrade handshake failed",
    FailureKind.NETWORK: "network error",
}

_CONNECT_CAUSES = {
    FailureKind.DNS: "dns_failure",
    FailureKind.REFUSED: "connection_refused",
    FailureKind.TLS: "tls_error",
    FailureKind.TIMEOUT: "timeout",
    FailureKind.HANDSHAKE: "handshake_failed",
    FailureKind.NETWORK: "network_error",
}


class Status(enum.StrEnum):
    """The verdict of one scenario or check."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Failure:
    """What happened, the most likely cause and the next step, with the evidence."""

    cause: str
    what: str
    likely: str
    next_step: str
    code: int | None = None
    slug: str | None = None
    reason: str | None = None
    http_status: int | None = None
    elapsed_s: float | None = None
    idle_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    connection_id: str | None = None
    """The server's id of the socket that failed, when it got that far."""
    server_record: dict[str, Any] | None = None
    """What the server recorded of that socket (``/diagnostics/connections/{id}``)."""

    def with_diagnosis(self, found: Diagnosis, note: str = "") -> Failure:
        """The same evidence under another diagnosis (``note`` is appended to ``what``)."""
        what = f"{self.what}; {note}" if note else self.what
        return replace(
            self, cause=found.cause, likely=found.likely, next_step=found.next_step, what=what
        )

    def to_json(self) -> dict[str, Any]:
        """The failure as the JSON report shows it."""
        return {
            "cause": self.cause,
            "what": self.what,
            "likely_cause": self.likely,
            "next_step": self.next_step,
            "code": self.code,
            "slug": self.slug,
            "reason": self.reason,
            "http_status": self.http_status,
            "elapsed_s": _rounded(self.elapsed_s),
            "idle_s": _rounded(self.idle_s),
            "headers": self.headers,
            "body": self.body,
            "connection_id": self.connection_id,
            "server_record": self.server_record,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Problem(Exception):
    """Raised by a scenario or a check: a failure was reproduced."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.what)
        self.failure = failure


class Skip(Exception):
    """Raised by a scenario or a check that cannot run here; the message says why."""


@dataclass(slots=True)
class Result:
    """The outcome of one scenario or check."""

    id: str
    name: str
    status: Status
    summary: str = ""
    duration_ms: float = 0.0
    failure: Failure | None = None
    details: dict[str, Any] = field(default_factory=dict)
    connection_ids: list[str] = field(default_factory=list)
    """The server's ids of the sockets it opened (from ``connection_established``)."""

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON report shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "duration_ms": round(self.duration_ms, 1),
            "failure": self.failure.to_json() if self.failure is not None else None,
            "details": self.details,
            "connection_ids": self.connection_ids,
        }


def fail(cause: str, what: str, **evidence: Any) -> Problem:
    """A problem with the diagnosis of ``cause`` from the table."""
    found = diagnosis(cause)
    return Problem(Failure(found.cause, what, found.likely, found.next_step, **evidence))


def failure_for(
    error: ClientError,
    *,
    doing: str,
    elapsed_s: float | None = None,
    idle_s: float | None = None,
) -> Failure:
    """The failure for a client error met while ``doing`` something, with its diagnosis."""
    if isinstance(error, ServerClosed):
        return _closed(error, doing, elapsed_s, idle_s)
    if isinstance(error, ConnectionLost):
        found = drop_diagnosis(elapsed_s, idle_s)
        what = f"{doing}: the connection dropped without a close frame (1006)"
        if elapsed_s is not None:
            what += f" {elapsed_s:.2f} s after the upgrade"
        if idle_s is not None:
            what += f", {idle_s:.2f} s after the last frame"
        return Failure(
            found.cause,
            what,
            found.likely,
            found.next_step,
            code=ConnectionLost.code,
            elapsed_s=elapsed_s,
            idle_s=idle_s,
        )
    if isinstance(error, HandshakeRejected):
        return _rejected(error, doing, elapsed_s)
    if isinstance(error, ConnectFailed):
        found = diagnosis(_CONNECT_CAUSES[error.kind])
        what = f"{doing}: {_CONNECT_WORDS[error.kind]} ({error.detail})"
        return Failure(found.cause, what, found.likely, found.next_step, elapsed_s=elapsed_s)
    if isinstance(error, UnexpectedFrame):
        found = diagnosis("unexpected_frame")
    else:
        found = diagnosis("network_error")
    return Failure(
        found.cause,
        f"{doing}: {error}",
        found.likely,
        found.next_step,
        elapsed_s=elapsed_s,
        idle_s=idle_s,
    )


def _closed(
    error: ServerClosed, doing: str, elapsed_s: float | None, idle_s: float | None
) -> Failure:
    found = close_diagnosis(error.code) or diagnosis("abnormal_closure")
    cause = found.cause if close_diagnosis(error.code) is not None else f"close_{error.code}"
    what = f'{doing}: closed {error.code} {error.slug} ("{error.reason}")'
    if elapsed_s is not None:
        what += f" {elapsed_s:.2f} s after the upgrade"
    what += f": {close_meaning(error.code)}"
    return Failure(
        cause,
        what,
        found.likely,
        found.next_step,
        code=error.code,
        slug=error.slug,
        reason=error.reason,
        elapsed_s=elapsed_s,
        idle_s=idle_s,
    )


def _rejected(error: HandshakeRejected, doing: str, elapsed_s: float | None) -> Failure:
    found = http_diagnosis(error.status)
    headers = {
        name.lower(): value
        for name, value in error.headers.items()
        if name.lower() in TELLING_HEADERS
    }
    body = error.body[:_BODY_CHARS].decode(errors="replace") if error.body else None
    shown = ", ".join(f"{name}: {value}" for name, value in headers.items())
    what = f"{doing}: the upgrade was answered HTTP {error.status}"
    if elapsed_s is not None:
        what += f" after {elapsed_s:.2f} s"
    if shown:
        what += f" ({shown})"
    return Failure(
        found.cause,
        what,
        found.likely,
        found.next_step,
        http_status=error.status,
        elapsed_s=elapsed_s,
        headers=headers,
        body=body,
    )
