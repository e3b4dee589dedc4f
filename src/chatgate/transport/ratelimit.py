"""Per-connection rate limiting: a sliding window with a short grace for warnings.

Pure: the caller passes the clock. Past the limit a frame is refused with an
``error rate_limited``; a client that keeps sending is closed with 4100.
"""

from __future__ import annotations

import enum
from array import array


class Verdict(enum.Enum):
    """What to do with one client frame."""

    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


class SlidingWindow:
    """Allows ``limit`` events per ``window_s`` seconds, counted over a sliding window.

    The times of the last ``limit`` allowed events sit in a ring of doubles
    that grows only as events come: an idle connection costs a few bytes, not
    a deque block, and an event is allowed exactly when the oldest of those
    times has left the window.
    """

    __slots__ = ("_limit", "_next", "_times", "_window")

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._times = array("d")
        self._next = 0

    def hit(self, now: float) -> bool:
        """Record an event at ``now``; False when it passes the limit (then it is not counted)."""
        times = self._times
        if self._limit <= 0:
            return False
        if len(times) < self._limit:
            times.append(now)
            return True
        if times[self._next] > now - self._window:
            return False
        times[self._next] = now
        self._next = (self._next + 1) % self._limit
        return True


class RateLimiter:
    """Decides, frame by frame, whether to process, refuse or close."""

    __slots__ = ("_grace", "_strikes", "_window")

    def __init__(self, limit: int, window_s: float, grace: int | None = None) -> None:
        self._window = SlidingWindow(limit, window_s)
        # Refused frames tolerated before closing: enough for a client to see the
        # error and back off, too few to keep the server busy answering a flood.
        self._grace = grace if grace is not None else max(1, limit // 4)
        self._strikes = 0

    def check(self, now: float) -> Verdict:
        """The verdict for a frame arriving at ``now``."""
        if self._window.hit(now):
            self._strikes = 0
            return Verdict.ALLOW
        self._strikes += 1
        return Verdict.REFUSE if self._strikes <= self._grace else Verdict.CLOSE
