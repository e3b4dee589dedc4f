"""Replaying a thread's log on ``resume``: consecutive text deltas of one answer merged.

A streamed answer is stored one ``agent_text_delta`` per piece; replayed as
is, a 10,000-token answer would cost 10,000 frames. Consecutive deltas of the
same answer whose offsets follow each other are sent as one delta carrying the
text of all of them and the ``event_id`` of the last (the ids then skip), up to
:data:`~chatgate.store.batch.MERGED_DELTA_CHARS` code points a frame, the most
a stored delta merged while it waited for its commit holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatgate.models import StoredEvent
from chatgate.protocol import encode, event_frame
from chatgate.store.batch import DELTA, MERGED_DELTA_CHARS


@dataclass(slots=True)
class DeltaMerger:
    """Collects consecutive deltas of one answer; hands out frames when the run breaks."""

    _first: StoredEvent | None = None
    _last: StoredEvent | None = None
    _texts: list[str] = field(default_factory=list)
    _chars: int = 0

    def add(self, event: StoredEvent) -> list[bytes]:
        """Take the next event of the log; return the frames that are complete now."""
        if event.type != DELTA or not _is_delta(event):
            return [*self.flush(), event_frame(event)]
        frames = [] if self._continues(event) else self.flush()
        text: str = event.payload["text"]
        if self._first is None:
            self._first = event
        self._last = event
        self._texts.append(text)
        self._chars += len(text)
        if self._chars >= MERGED_DELTA_CHARS:
            frames.extend(self.flush())
        return frames

    def flush(self) -> list[bytes]:
        """The merged delta held so far, if any, as one frame."""
        first, last = self._first, self._last
        if first is None or last is None:
            return []
        self._first = self._last = None
        texts, self._texts, self._chars = self._texts, [], 0
        if first is last:
            return [event_frame(first)]
        payload = {
            "message_id": first.payload["message_id"],
            "offset": first.payload["offset"],
            "text": "".join(texts),
        }
        frame = encode(
            DELTA,
            payload,
            thread_id=last.thread_id,
            run_id=last.run_id,
            event_id=last.event_id,
            ts=last.ts,
        )
        return [frame]

    def _continues(self, event: StoredEvent) -> bool:
        first, last = self._first, self._last
        if first is None or last is None:
            return False
        return (
            event.event_id == last.event_id + 1
            and event.run_id == first.run_id
            and event.payload["message_id"] == first.payload["message_id"]
            and event.payload["offset"] == first.payload["offset"] + self._chars
        )


def _is_delta(event: StoredEvent) -> bool:
    """Whether the stored delta has the shape the server gives deltas (a log may hold others)."""
    payload = event.payload
    return (
        isinstance(payload.get("text"), str)
        and isinstance(payload.get("offset"), int)
        and isinstance(payload.get("message_id"), str)
    )
