"""Reconnection policy: the retry class of every close comes from the table; full jitter."""

from __future__ import annotations

import random
import ssl

import pytest

from chatgate.client.backoff import ReconnectPolicy, retry_for
from chatgate.client.errors import (
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    ServerClosed,
    UnexpectedFrame,
)
from chatgate.closecodes import CLOSE_CODES, CloseCode, Retry, close_reason


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not a secret


@pytest.mark.parametrize("code", list(CloseCode))
def test_every_close_of_the_table_follows_the_table(code: CloseCode) -> None:
    error = ServerClosed(int(code), close_reason(code, "detail"))
    assert retry_for(error) is CLOSE_CODES[code].retry


def test_the_classes_of_the_contract() -> None:
    def retry(code: CloseCode) -> Retry:
        return retry_for(ServerClosed(int(code), close_reason(code)))

    assert {retry(c) for c in CloseCode if 4000 <= c < 4100} == {Retry.NEVER}
    assert {retry(c) for c in CloseCode if c >= 4100} == {Retry.BACKOFF}
    assert retry(CloseCode.INTERNAL_ERROR) is Retry.BACKOFF
    assert retry(CloseCode.TRY_AGAIN_LATER) is Retry.BACKOFF
    assert retry(CloseCode.SERVICE_RESTART) is Retry.NOW


@pytest.mark.parametrize(
    ("code", "retry"),
    [(1001, Retry.BACKOFF), (1014, Retry.BACKOFF), (1002, Retry.NEVER), (4999, Retry.NEVER)],
)
def test_codes_outside_the_table(code: int, retry: Retry) -> None:
    assert retry_for(ServerClosed(code, "")) is retry


def test_what_the_server_never_sends() -> None:
    assert retry_for(ConnectionLost()) is Retry.BACKOFF
    assert retry_for(HandshakeRejected(503, {}, b"")) is Retry.BACKOFF
    assert retry_for(HandshakeRejected(502, {}, b"")) is Retry.BACKOFF
    assert retry_for(HandshakeRejected(429, {}, b"")) is Retry.BACKOFF
    assert retry_for(HandshakeRejected(403, {}, b"")) is Retry.NEVER
    assert retry_for(HandshakeRejected(404, {}, b"")) is Retry.NEVER
    assert retry_for(ConnectFailed(FailureKind.REFUSED, "")) is Retry.BACKOFF
    assert retry_for(ConnectFailed(FailureKind.TIMEOUT, "")) is Retry.BACKOFF
    assert retry_for(ConnectFailed(FailureKind.TLS, str(ssl.SSLError()))) is Retry.NEVER
    assert retry_for(UnexpectedFrame("?")) is Retry.NEVER


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = ReconnectPolicy(base_s=0.5, cap_s=4.0, rng=seeded(1))
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        delays = [policy.delay(Retry.BACKOFF, attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not around the ceiling.
        assert min(delays) < ceiling / 4 < ceiling * 3 / 4 < max(delays)


def test_now_is_at_once_the_first_time_then_backs_off() -> None:
    policy = ReconnectPolicy(base_s=1.0, cap_s=1.0, rng=seeded(3))
    assert policy.delay(Retry.NOW, 0) == 0.0
    assert 0 < policy.delay(Retry.NOW, 1) <= 1.0


def test_never_has_no_delay() -> None:
    with pytest.raises(ValueError, match="not be retried"):
        ReconnectPolicy().delay(Retry.NEVER, 0)


def test_attempts_are_bounded() -> None:
    assert not ReconnectPolicy(max_attempts=2).exhausted(1)
    assert ReconnectPolicy(max_attempts=2).exhausted(2)
    assert not ReconnectPolicy(max_attempts=None).exhausted(10**6)


def test_the_seeded_delays_repeat() -> None:
    first = ReconnectPolicy(rng=seeded(9))
    second = ReconnectPolicy(rng=seeded(9))
    assert [first.delay(Retry.BACKOFF, n) for n in range(5)] == [
        second.delay(Retry.BACKOFF, n) for n in range(5)
    ]


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="base_s"):
        ReconnectPolicy(base_s=-1)
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectPolicy(max_attempts=-1)
