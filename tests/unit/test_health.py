"""The health monitor: a cached verdict, and one missed probe is not an outage."""

from __future__ import annotations

from chatgate.errors import StoreUnavailable
from chatgate.ops.health import HealthMonitor


class Flaky:
    """A probe that fails while ``down`` is set, and counts its calls."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("no answer")


async def test_one_failed_check_does_not_mark_a_dependency_down() -> None:
    store = Flaky()
    monitor = HealthMonitor({"store": store})
    await monitor.check()
    store.down = True
    await monitor.check()
    assert monitor.failing == {}
    assert await monitor.readiness() == {"store": None}


async def test_two_failed_checks_in_a_row_do_and_one_success_recovers() -> None:
    store = Flaky()
    monitor = HealthMonitor({"store": store})
    store.down = True
    await monitor.check()
    await monitor.check()
    assert monitor.failing == {"store": "StoreUnavailable"}
    assert not monitor.is_up("store")
    store.down = False
    await monitor.check()
    assert monitor.failing == {}


async def test_a_miss_between_successes_starts_the_count_again() -> None:
    store = Flaky()
    monitor = HealthMonitor({"store": store})
    for down in (True, False, True, False):
        store.down = down
        await monitor.check()
    assert monitor.failing == {}


async def test_an_operation_that_found_it_down_marks_it_at_once() -> None:
    monitor = HealthMonitor({"store": Flaky()})
    await monitor.check()
    monitor.report_failure("store", "StoreUnavailable")
    assert await monitor.readiness() == {"store": "StoreUnavailable"}


async def test_readiness_answers_from_the_cache_without_probing() -> None:
    store = Flaky()
    monitor = HealthMonitor({"store": store})
    await monitor.check()
    for _ in range(100):
        await monitor.readiness()
    assert store.calls == 1


async def test_readiness_probes_once_when_nothing_was_checked_yet() -> None:
    store = Flaky()
    store.down = True
    monitor = HealthMonitor({"store": store}, failures_to_fail=1)
    assert await monitor.readiness() == {"store": "StoreUnavailable"}
    assert store.calls == 1
