"""Dependency health: whether the store and the broker answer, known without asking per socket.

A background task pings each dependency every few seconds, and any operation
that finds one down reports it at once; new sockets and ``/readyz`` read the
cached verdict (1013, or 503, while a dependency is down) instead of paying a
round trip each: a burst of readiness requests must not become a burst of
probes that time out under their own load.

A background probe that fails once is not enough to call a dependency down: a
ping that waits behind a busy pool says more about the load than about the
dependency. It takes ``failures_to_fail`` misses in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatgate.errors import BrokerUnavailable, StoreUnavailable
from chatgate.logs import get_logger

log = get_logger("chatgate.ops.health")

Probe = Callable[[], Awaitable[None]]


class HealthMonitor:
    """Tracks which dependencies are failing, by name."""

    def __init__(
        self,
        probes: dict[str, Probe],
        interval_s: float = 2.0,
        timeout_s: float = 2.0,
        failures_to_fail: int = 2,
    ) -> None:
        self._probes = probes
        self._interval = interval_s
        self._timeout = timeout_s
        self._failures_to_fail = max(failures_to_fail, 1)
        self._failing: dict[str, str] = {}
        self._misses: dict[str, int] = dict.fromkeys(probes, 0)
        self._checked = False
        self._task: asyncio.Task[None] | None = None
        self.checks_run = 0
        """How many times every dependency was probed (the background loop's pace)."""

    @property
    def failing(self) -> dict[str, str]:
        """Failing dependencies and why (a class name or "timed out", never a URL)."""
        return dict(self._failing)

    def report_failure(self, name: str, why: str) -> None:
        """Mark ``name`` down now; the next successful check marks it up again."""
        if name not in self._failing:
            log.warning("dependency down", dependency=name, why=why)
        self._failing[name] = why

    def is_up(self, name: str) -> bool:
        """Whether the cached verdict holds ``name`` as answering."""
        return name not in self._failing

    async def check(self) -> dict[str, str | None]:
        """Ping every dependency now; returns each one's problem or None.

        A dependency is marked down after ``failures_to_fail`` failed checks in
        a row (or at once by :meth:`report_failure`), and up at its first success.
        """
        self.checks_run += 1
        results = await asyncio.gather(*(self._check_one(p) for p in self._probes.values()))
        outcome = dict(zip(self._probes, results, strict=True))
        for name, problem in outcome.items():
            if problem is None:
                self._misses[name] = 0
                if self._failing.pop(name, None) is not None:
                    log.info("dependency recovered", dependency=name)
                continue
            self._misses[name] = misses = self._misses.get(name, 0) + 1
            if misses >= self._failures_to_fail or name in self._failing:
                self.report_failure(name, problem)
            else:
                log.info("dependency check missed once", dependency=name, why=problem)
        self._checked = True
        return outcome

    async def readiness(self) -> dict[str, str | None]:
        """Each dependency's problem, or None, from the cached verdict.

        Probes only while no check has run yet (a gateway whose lifespan has not
        started the monitor); otherwise it costs no round trip.
        """
        if not self._checked:
            await self.check()
        failing = self._failing
        return {name: failing.get(name) for name in self._probes}

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


def readiness_route(monitor: HealthMonitor) -> Route:
    """``GET /readyz``: 200 when every dependency answers, else 503 naming each failing one."""

    async def readyz(_: Request) -> JSONResponse:
        checks = await monitor.readiness()
        failing = [name for name, problem in checks.items() if problem is not None]
        body: dict[str, Any] = {
            "status": "unavailable" if failing else "ready",
            "failing": failing,
            "checks": {name: problem or "ok" for name, problem in checks.items()},
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    return Route("/readyz", readyz)
