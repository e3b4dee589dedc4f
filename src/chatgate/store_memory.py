"""An in-process store: nothing survives the process. For tests and quick starts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from chatgate.models import Message, Role, StoredEvent, Thread, new_id
from chatgate.protocol import timestamp


class MemoryStore:
    """Keeps threads, messages and events in dictionaries."""

    kind = "memory"

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._threads: dict[str, Thread] = {}
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._events: dict[str, list[StoredEvent]] = defaultdict(list)

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to flush."""

    async def ping(self) -> None:
        """Always answers."""

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``."""
        now = timestamp()
        thread = Thread(new_id("th"), owner, title, now, now)
        self._threads[thread.id] = thread
        return thread

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        thread = self._threads.get(thread_id)
        return thread if thread is not None and thread.owner == owner else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        mine = [t for t in self._threads.values() if t.owner == owner]
        return sorted(mine, key=lambda t: t.updated_at, reverse=True)

    async def add_message(
        self, thread_id: str, role: Role, content: str, run_id: str | None
    ) -> Message:
        """Append a message and touch the thread."""
        now = timestamp()
        message = Message(new_id("msg"), thread_id, role, content, run_id, now)
        self._messages[thread_id].append(message)
        thread = self._threads[thread_id]
        self._threads[thread_id] = Thread(
            thread.id, thread.owner, thread.title, thread.created_at, now
        )
        return message

    async def list_messages(self, thread_id: str) -> list[Message]:
        """Return a thread's messages, oldest first."""
        return list(self._messages.get(thread_id, ()))

    async def append_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> StoredEvent:
        """Number the event after the thread's last one and keep it."""
        log = self._events[thread_id]
        event = StoredEvent(thread_id, len(log) + 1, kind, run_id, payload, timestamp())
        log.append(event)
        return event

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return events after ``after_event_id``; ids are dense, so it is a slice."""
        return self._events.get(thread_id, [])[after_event_id : after_event_id + limit]
