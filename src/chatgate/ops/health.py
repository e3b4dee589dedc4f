"""Dependency health: whether the store and the broker answer, known without asking per socket.

A background task pings each dependency every few seconds, and any operation
that finds one down reports it at once; new sockets read the cached verdict
(1013 while a dependency is down) instead of paying a round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from chatgate.errors import BrokerUnavailable, StoreUnavailable
from chatgate.logs import get_logger

log = get_logger("chatgate.ops.health")

Probe = Callable[[], Awaitable[None]]


class HealthMonitor:
    """Tracks which dependencies are failing, by name."""

    def __init__(
        self, probes: dict[str, Probe], interval_s: float = 2.0, timeout_s: float = 2.0
    ) -> None:
        self._probes = probes
        self._interval = interval_s
        self._timeout = timeout_s
        self._failing: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def failing(self) -> dict[str, str]:
        """Failing dependencies and why (a class name or "timed out", never a URL)."""
        return dict(self._failing)

    def report_failure(self, name: str, why: str) -> None:
        """Mark ``name`` down now; the next successful check marks it up again."""
        if name not in self._failing:
            log.warning("dependency down", dependency=name, why=why)
        self._failing[name] = why

    async def check(self) -> dict[str, str | None]:
        """Ping every dependency now; returns each one's problem or None."""
        results = await asyncio.gather(*(self._check_one(p) for p in self._probes.values()))
        outcome = dict(zip(self._probes, results, strict=True))
        for name, problem in outcome.items():
            if problem is None:
                if self._failing.pop(name, None) is not None:
                    log.info("dependency recovered", dependency=name)
            else:
                self.report_failure(name, problem)
        return outcome

    async def _check_one(self, probe: Probe) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await probe()
        except TimeoutError:
            return "timed out"
        except (StoreUnavailable, BrokerUnavailable, OSError) as exc:
            return type(exc).__name__
        return None

    async def start(self) -> None:
        """Check once, then keep checking in the background."""
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        """Stop the background checks."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()
