"""Server events as values, and the per-thread cursor that delivers them exactly once, in order.

Pure: no I/O. A thread's ``event_id`` rises by one per event (docs/protocol.md
section 4), so a client that has delivered up to ``n`` knows the next event
is ``n + 1``. Across a reconnection, live events of the new socket may arrive
before the ``resume`` that fills the gap below them; the cursor holds them
until the gap is filled. A resume merges consecutive text deltas into one
carrying the last merged id, so its ids skip: what follows such a skip is
held until ``resume_complete`` says the log has nothing below it to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AGENT_EVENT_TYPES = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)
"""The five agent events of a run, in the order a run sends them."""

TEXT_DELTA = "agent_text_delta"
"""A piece of a run's answer, between ``agent_started`` and the run's end."""

RUN_END_TYPES = frozenset({"agent_completed", "agent_error"})
"""A run ends with exactly one of these."""


@dataclass(frozen=True, slots=True)
class Event:
    """One server frame in the common envelope."""

    type: str
    event_id: int | None
    thread_id: str | None
    run_id: str | None
    ts: str | None
    payload: dict[str, Any] = field(repr=False)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Event:
        """Build an event from a decoded frame; missing envelope fields become None."""
        payload = frame.get("payload")
        event_id = frame.get("event_id")
        return cls(
            type=str(frame.get("type")),
            event_id=event_id
            if isinstance(event_id, int) and not isinstance(event_id, bool)
            else None,
            thread_id=_str_or_none(frame.get("thread_id")),
            run_id=_str_or_none(frame.get("run_id")),
            ts=_str_or_none(frame.get("ts")),
            payload=payload if isinstance(payload, dict) else {},
        )

    @property
    def ends_run(self) -> bool:
        """Whether this event is the last of its run."""
        return self.type in RUN_END_TYPES

    @property
    def in_thread(self) -> bool:
        """Whether this event belongs to a thread's numbered log."""
        return self.thread_id is not None and self.event_id is not None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class ThreadCursor:
    """Releases one thread's events exactly once and in ``event_id`` order.

    ``last`` is the highest event id released; None until the first event
    (or an explicit starting point) fixes it.
    """

    __slots__ = ("_held", "last")

    def __init__(self, last: int | None = None) -> None:
        self.last = last
        self._held: dict[int, Event] = {}

    def accept(self, event: Event) -> list[Event]:
        """Take one event of the thread; return the events that can now be released, in order.

        Raises:
            ValueError: the event carries no ``event_id``.
        """
        event_id = event.event_id
        if event_id is None:
            raise ValueError("only numbered events go through a thread cursor")
        if self.last is None:
            self.last = event_id - 1
        if event_id <= self.last or event_id in self._held:
            return []
        self._held[event_id] = event
        released = []
        while self.last + 1 in self._held:
            self.last += 1
            released.append(self._held.pop(self.last))
        return released

    def flush(self) -> list[Event]:
        """Release the held events past a gap the server says will not be filled."""
        released = [self._held.pop(event_id) for event_id in sorted(self._held)]
        if released and released[-1].event_id is not None:
            self.last = released[-1].event_id
        return released

    @property
    def waiting(self) -> int:
        """How many events are held behind a gap."""
        return len(self._held)


class TextAssembly:
    """An answer built from ``agent_text_delta`` pieces placed at their offsets.

    Offsets count Unicode code points, as Python's ``str`` does. A piece that
    was already placed (a delta delivered twice, or a merged resume delta
    overlapping live ones) changes nothing; a piece past a hole waits until
    the hole is filled.
    """

    __slots__ = ("_held", "_parts", "length")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._held: dict[int, str] = {}
        self.length = 0

    @property
    def text(self) -> str:
        """The answer so far, without holes."""
        return "".join(self._parts)

    def place(self, offset: int, text: str) -> None:
        """Put ``text`` at ``offset``; ignore what is already there."""
        if offset > self.length:
            self._held[offset] = text
            return
        self._append(text[self.length - offset :])
        while self._held:
            ready = [o for o in self._held if o <= self.length]
            if not ready:
                return
            for start in sorted(ready):
                piece = self._held.pop(start)
                self._append(piece[self.length - start :] if start <= self.length else "")

    def _append(self, text: str) -> None:
        if text:
            self._parts.append(text)
            self.length += len(text)
