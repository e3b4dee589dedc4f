"""The handshake timeout of every request head still arriving, on one timer per event loop.

Every head gets the same time (``CHATGATE_HANDSHAKE_TIMEOUT_S``), so deadlines
come in the order heads start: a dict in insertion order is a queue sorted by
deadline, and one timer, set for the oldest, serves them all. A timer per
connection cost more than anything else the HTTP protocol does of its own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

_RESOLUTION_S = 0.001
"""A deadline this close is due: event loop timers fire to the millisecond."""


class HeadClock(Protocol):
    """A connection whose request head is timed."""

    def head_timed_out(self) -> None:
        """The head did not complete in time."""


class HeadDeadlines:
    """The connections of one event loop whose head is still arriving, oldest first.

    Each connection keeps the one it was started with: replacing the server's
    (another event loop's connections arriving) never loses a deadline.
    """

    __slots__ = ("_loop", "_pending", "_timeout_s", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._pending: dict[HeadClock, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop whose connections these are."""
        return self._loop

    def start(self, connection: HeadClock) -> None:
        """Give ``connection`` the timeout from now (again, if it was timed already)."""
        pending = self._pending
        pending.pop(connection, None)
        deadline = pending[connection] = self._loop.time() + self._timeout_s
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def stop(self, connection: HeadClock) -> None:
        """The head of ``connection`` is complete, or the connection is gone."""
        self._pending.pop(connection, None)

    def _expire(self) -> None:
        """Tell every connection past its deadline, then wait for the next deadline."""
        self._timer = None
        pending = self._pending
        due = self._loop.time() + _RESOLUTION_S
        while pending:
            connection = next(iter(pending))
            deadline = pending[connection]
            if deadline > due:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            del pending[connection]
            connection.head_timed_out()
