"""When to reconnect, and after how long: the close-code table's retry classes and full jitter.

Pure: no I/O and no clock. The retry class of a server close comes from
:data:`chatgate.closecodes.CLOSE_CODES`; this module only adds what a client
sees that the server never sends (a dropped connection, an HTTP status, a
network error).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from http import HTTPStatus

from chatgate.client.errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    ServerClosed,
)
from chatgate.closecodes import Retry

_TRANSIENT_CLOSES = frozenset({1001, 1005, 1006, 1014})
"""Codes a proxy or the network produces (going away, no status, abnormal, bad gateway)."""

_TRANSIENT_STATUSES = frozenset(
    {HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS}
    | {s for s in HTTPStatus if s >= HTTPStatus.INTERNAL_SERVER_ERROR}
)
_MAX_EXPONENT = 32


def retry_for(error: ClientError) -> Retry:
    """Whether, and how soon, a client should reconnect after ``error``.

    Closes of the table follow the table (40xx never, 41xx/1011/1013 backoff,
    1012 now). A dropped connection, a 5xx/429/408 upgrade answer and network
    failures back off; certificate and protocol failures are not retried.
    """
    if isinstance(error, ServerClosed):
        if error.info is not None:
            return error.info.retry
        return Retry.BACKOFF if error.code in _TRANSIENT_CLOSES else Retry.NEVER
    if isinstance(error, ConnectionLost):
        return Retry.BACKOFF
    if isinstance(error, HandshakeRejected):
        return Retry.BACKOFF if error.status in _TRANSIENT_STATUSES else Retry.NEVER
    if isinstance(error, ConnectFailed):
        return Retry.NEVER if error.kind is FailureKind.TLS else Retry.BACKOFF
    return Retry.NEVER


def _default_rng() -> random.Random:
    # Jitter only spreads reconnections over time; it needs no cryptographic strength.
    return random.Random()  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Full-jitter exponential backoff: attempt ``n`` waits ``uniform(0, min(cap, base * 2**n))``.

    ``max_attempts`` bounds the reconnection attempts after one loss (None: no bound).
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int | None = 10
    rng: random.Random = field(default_factory=_default_rng, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be 0 or more")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be 0 or more")

    def delay(self, retry: Retry, attempt: int) -> float:
        """Seconds to wait before reconnection attempt ``attempt`` (0-based).

        Raises:
            ValueError: ``retry`` is :attr:`Retry.NEVER`.
        """
        if retry is Retry.NEVER:
            raise ValueError("no delay for a close that must not be retried")
        if retry is Retry.NOW and attempt == 0:
            return 0.0
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, _MAX_EXPONENT))
        return self.rng.uniform(0.0, ceiling)

    def exhausted(self, attempts: int) -> bool:
        """Whether ``attempts`` failed reconnections are as many as allowed."""
        return self.max_attempts is not None and attempts >= self.max_attempts
