"""Starting the store and the broker at boot, waiting for them a bounded time.

A database or Redis that comes up a few seconds after the gateway (a compose
file, a pod whose proxy sidecar is slower) is no reason to crash-loop: each
start is retried with backoff for up to ``CHATGATE_STARTUP_TIMEOUT_S``. Past
that the process stops with one line naming the dependency, and exits 3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from chatgate.errors import BrokerUnavailable, StoreUnavailable
from chatgate.logs import get_logger

log = get_logger("chatgate.startup")

FIRST_RETRY_S = 0.25
MAX_RETRY_S = 5.0


class StartupFailed(Exception):
    """A dependency stayed unavailable for the whole startup timeout."""


async def start_with_retry(
    dependency: str,
    start: Callable[[], Awaitable[None]],
    timeout_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call ``start`` until it succeeds or ``timeout_s`` has passed.

    Only unavailability is retried; any other error (a bad schema, a bug)
    propagates at once.

    Raises:
        StartupFailed: still unavailable after ``timeout_s`` (the message names
            the dependency and the error class, never a URL or credential).
    """
    deadline = clock() + timeout_s
    delay = FIRST_RETRY_S
    while True:
        try:
            await start()
        except (StoreUnavailable, BrokerUnavailable) as exc:
            left = deadline - clock()
            if left <= 0:
                raise StartupFailed(
                    f"{exc}; gave up after {timeout_s:g}s (CHATGATE_STARTUP_TIMEOUT_S)"
                ) from exc
            wait = min(delay, left)
            log.warning(
                "dependency unavailable at startup; retrying",
                dependency=dependency,
                error=str(exc),
                retry_in_s=round(wait, 3),
            )
            await sleep(wait)
            delay = min(delay * 2, MAX_RETRY_S)
        else:
            return
