"""Waiting for the store and broker at boot: backoff, the deadline, and what is not retried."""

from __future__ import annotations

import pytest

from chatgate.errors import BrokerUnavailable, StoreUnavailable
from chatgate.startup import MAX_RETRY_S, StartupFailed, start_with_retry


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """A dependency's start that fails ``failures`` times with ``error``, then succeeds."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


async def test_a_dependency_that_answers_at_once_is_started_once() -> None:
    clock, start = Clock(), Flaky(0, StoreUnavailable("x"))
    await start_with_retry("store", start, 30.0, clock=clock, sleep=clock.sleep)
    assert start.calls == 1
    assert clock.sleeps == []


async def test_retries_back_off_until_the_dependency_answers() -> None:
    clock, start = Clock(), Flaky(4, StoreUnavailable("sqlite store unavailable: OperationalError"))
    await start_with_retry("store", start, 30.0, clock=clock, sleep=clock.sleep)
    assert start.calls == 5
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]


async def test_the_wait_between_tries_is_capped() -> None:
    clock, start = Clock(), Flaky(8, BrokerUnavailable("redis down"))
    await start_with_retry("broker", start, 300.0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, MAX_RETRY_S, MAX_RETRY_S, MAX_RETRY_S]


async def test_past_the_deadline_it_fails_naming_the_error_and_the_setting() -> None:
    clock = Clock()
    start = Flaky(1000, StoreUnavailable("postgresql store unavailable: ConnectionRefusedError"))
    with pytest.raises(StartupFailed) as failed:
        await start_with_retry("store", start, 3.0, clock=clock, sleep=clock.sleep)
    assert str(failed.value) == (
        "postgresql store unavailable: ConnectionRefusedError; "
        "gave up after 3s (CHATGATE_STARTUP_TIMEOUT_S)"
    )
    # Never sleeps past the deadline: the last wait is cut to what is left.
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.25]
    assert start.calls == 5


async def test_a_zero_timeout_tries_once() -> None:
    clock, start = Clock(), Flaky(1, StoreUnavailable("down"))
    with pytest.raises(StartupFailed):
        await start_with_retry("store", start, 0.0, clock=clock, sleep=clock.sleep)
    assert start.calls == 1
    assert clock.sleeps == []


async def test_other_errors_are_not_retried() -> None:
    clock, start = Clock(), Flaky(1, RuntimeError("schema is newer than this gateway"))
    with pytest.raises(RuntimeError, match="schema is newer"):
        await start_with_retry("store", start, 30.0, clock=clock, sleep=clock.sleep)
    assert start.calls == 1
    assert clock.sleeps == []
