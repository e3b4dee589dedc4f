"""Which event ids a socket has already received, per thread, as compact ranges.

A socket receives each ``(thread_id, event_id)`` at most once whether it came
live or through ``resume``. Deliveries are nearly contiguous, so a sorted list
of disjoint ranges stays a handful of entries long.
"""

from __future__ import annotations

import bisect


class SeenRanges:
    """A set of positive integers stored as sorted, disjoint, inclusive ranges."""

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self._ends[i]

    def add(self, value: int) -> bool:
        """Add ``value``; return False when it was already there."""
        starts, ends = self._starts, self._ends
        if ends and value == ends[-1] + 1:
            # The usual case: the next event of a thread extends the last range.
            ends[-1] = value
            return True
        i = bisect.bisect_right(starts, value) - 1
        if i >= 0 and value <= ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == value - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == value + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = value
        elif joins_right:
            starts[i + 1] = value
        else:
            starts.insert(i + 1, value)
            ends.insert(i + 1, value)
        return True

    @property
    def highest(self) -> int:
        """The largest value added, or 0."""
        return self._ends[-1] if self._ends else 0

    def ranges(self) -> list[tuple[int, int]]:
        """The ranges, for tests and diagnostics."""
        return list(zip(self._starts, self._ends, strict=True))
