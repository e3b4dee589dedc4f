"""Planning one group-commit batch: the rows of each table, and the ids the database gives.

A batch holds the writes of many chat turns. :class:`BatchPlan` sorts them by
table so that each table is written with one statement, and places the event and
message ids once the database has said where each thread's log stands.

A streamed answer's deltas queued one after the other, while they wait for the
same commit, become one :class:`NewDelta`: one row and one event whose text is
theirs joined (``agent_text_delta`` places text by offset, so a client builds
the same answer from it), up to :data:`MERGED_DELTA_CHARS` code points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.models import Message, RunRecord, RunStatus, StoredEvent, Thread


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event waiting for its id in the group commit."""

    thread_id: str
    run_id: str | None
    type: str
    payload: dict[str, Any] = field(repr=False)
    encoded: str = field(repr=False)
    ts: str


DELTA = "agent_text_delta"
MERGED_DELTA_CHARS = 32_768
"""Most code points one stored (or replayed) delta carries when several are merged."""
_DELTA_KEYS = frozenset({"message_id", "offset", "text"})


@dataclass(slots=True)
class NewDelta:
    """Consecutive text deltas of one answer waiting in the group commit: one event."""

    thread_id: str
    run_id: str | None
    message_id: str
    offset: int
    pieces: list[str]
    chars: int
    ts: str

    @classmethod
    def of(
        cls, thread_id: str, run_id: str | None, payload: dict[str, Any], ts: str
    ) -> NewDelta | None:
        """The delta of ``payload``, or None when it is not a plain delta (it is stored as is).

        Raises:
            TypeError: the text cannot be encoded as JSON.
        """
        if payload.keys() != _DELTA_KEYS:
            return None
        text, offset, message_id = payload["text"], payload["offset"], payload["message_id"]
        if type(text) is not str or type(offset) is not int or type(message_id) is not str:
            return None
        # Encoded when the batch is written: here only refused as early as any payload.
        orjson.dumps(text)
        return cls(thread_id, run_id, message_id, offset, [text], len(text), ts)

    def absorb(self, later: NewDelta) -> bool:
        """Take ``later``'s text when it continues this answer right where this one ends."""
        if (
            later.offset != self.offset + self.chars
            or later.message_id != self.message_id
            or later.thread_id != self.thread_id
            or later.run_id != self.run_id
            or self.chars + later.chars > MERGED_DELTA_CHARS
        ):
            return False
        self.pieces += later.pieces
        self.chars += later.chars
        return True

    def event(self) -> NewEvent:
        """The event to store: the pieces' text joined."""
        payload = {
            "message_id": self.message_id,
            "offset": self.offset,
            "text": "".join(self.pieces),
        }
        encoded = orjson.dumps(payload).decode()
        return NewEvent(self.thread_id, self.run_id, DELTA, payload, encoded, self.ts)


def absorb(pending: Write, later: Write) -> bool:
    """The group commit's merge: ``later`` joins ``pending`` when both are deltas that follow."""
    return isinstance(later, NewDelta) and isinstance(pending, NewDelta) and pending.absorb(later)


@dataclass(frozen=True, slots=True)
class NewThread:
    """A thread waiting in the group commit."""

    thread: Thread


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message waiting in the group commit; it also touches its thread."""

    message: Message


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run, starting at ``ts``, waiting in the group commit."""

    run: RunRecord
    ts: str


@dataclass(frozen=True, slots=True)
class EndedRun:
    """The end of a run waiting in the group commit."""

    run_id: str
    status: RunStatus
    ts: str


Write = NewThread | NewMessage | NewRun | EndedRun | NewEvent | NewDelta
"""One store call's write, waiting in the group commit."""
Written = Thread | Message | StoredEvent | None
"""What a write gives its caller back once committed."""


@dataclass(slots=True)
class ThreadChange:
    """What one batch does to a thread's row: new events, and the time of its newest message."""

    events: int = 0
    updated_at: str | None = None


@dataclass(slots=True)
class BatchPlan:
    """A batch of writes sorted into one list of rows per statement, in submission order.

    Built without the database; :meth:`place` then gives the messages and
    events their threads' answer (which threads exist, their new last event
    id) and every write its result.
    """

    writes: list[Write]
    new_threads: list[dict[str, Any]] = field(default_factory=list)
    new_runs: list[dict[str, Any]] = field(default_factory=list)
    ended_runs: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, ThreadChange] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    queued_events: list[tuple[NewEvent, int]] = field(default_factory=list)
    queued_messages: list[Message] = field(default_factory=list)

    @classmethod
    def of(cls, writes: Sequence[Write]) -> BatchPlan:
        """Sort ``writes``; the rows that depend on no thread's answer are ready at once.

        ``queued_events`` holds every event, deltas joined, with its place in
        its thread's events of the batch (1 for the first); ``queued_messages``
        every message: both before any thread's answer.
        """
        plan = cls([])
        for queued in writes:
            write = queued.event() if isinstance(queued, NewDelta) else queued
            plan.writes.append(write)
            if isinstance(write, NewEvent):
                change = plan._change(write.thread_id)
                change.events += 1
                plan.queued_events.append((write, change.events))
            elif isinstance(write, NewMessage):
                plan._change(write.message.thread_id).updated_at = write.message.created_at
                plan.queued_messages.append(write.message)
            elif isinstance(write, NewThread):
                thread = write.thread
                plan.new_threads.append(
                    {
                        "id": thread.id,
                        "owner": thread.owner,
                        "title": thread.title,
                        "created_at": thread.created_at,
                        "updated_at": thread.updated_at,
                        "last_event_id": 0,
                    }
                )
            elif isinstance(write, NewRun):
                run = write.run
                plan.new_runs.append(
                    {
                        "run_id": run.run_id,
                        "thread_id": run.thread_id,
                        "owner": run.owner,
                        "instance_id": run.instance_id,
                        "status": "running",
                        "started_at": write.ts,
                    }
                )
            else:
                plan.ended_runs.append(
                    {"run": write.run_id, "status": write.status, "ts": write.ts}
                )
        # Rows of one table are updated in key order, so that two instances'
        # batches lock them in the same order and cannot deadlock.
        plan.ended_runs.sort(key=lambda row: str(row["run"]))
        return plan

    def _change(self, thread_id: str) -> ThreadChange:
        change = self.changes.get(thread_id)
        if change is None:
            change = self.changes[thread_id] = ThreadChange()
        return change

    def place(self, last_event_ids: Mapping[str, int]) -> list[Written | Exception]:
        """Fill the message and event rows; return each write's result, in order.

        ``last_event_ids`` holds, for every changed thread that exists, its
        ``last_event_id`` once raised by this batch's events; a message or an
        event for any other thread fails with ``LookupError``.
        """
        next_id = {
            thread: last - self.changes[thread].events + 1
            for thread, last in last_event_ids.items()
            if thread in self.changes
        }
        results: list[Written | Exception] = []
        for write in self.writes:
            if isinstance(write, NewEvent):
                results.append(self._place_event(write, next_id))
            elif isinstance(write, NewMessage):
                results.append(self._place_message(write.message, next_id))
            elif isinstance(write, NewThread):
                results.append(write.thread)
            else:
                results.append(None)
        return results

    def _place_event(self, event: NewEvent, next_id: dict[str, int]) -> StoredEvent | Exception:
        event_id = next_id.get(event.thread_id)
        if event_id is None:
            return LookupError(f"no thread {event.thread_id!r}")
        next_id[event.thread_id] = event_id + 1
        self.events.append(
            {
                "thread_id": event.thread_id,
                "event_id": event_id,
                "type": event.type,
                "run_id": event.run_id,
                "payload": event.encoded,
                "created_at": event.ts,
            }
        )
        return StoredEvent(
            event.thread_id, event_id, event.type, event.run_id, event.payload, event.ts
        )

    def _place_message(self, message: Message, next_id: dict[str, int]) -> Message | Exception:
        if message.thread_id not in next_id:
            return LookupError(f"no thread {message.thread_id!r}")
        self.messages.append(
            {
                "id": message.id,
                "thread_id": message.thread_id,
                "role": message.role,
                "content": message.content,
                "run_id": message.run_id,
                "created_at": message.created_at,
            }
        )
        return message
