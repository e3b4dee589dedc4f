"""The ``Store`` interface: threads, messages and the per-thread event log.

Backends live in ``store_<kind>.py`` and are chosen by the scheme of
``CHATGATE_DATABASE_URL`` in :func:`open_store`; an unknown scheme is a boot error.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from chatgate.errors import ConfigError
from chatgate.models import Message, Role, StoredEvent, Thread


class Store(Protocol):
    """Durable state of chats. Methods raise ``StoreUnavailable`` when the backend is down."""

    kind: str

    async def start(self) -> None:
        """Connect and prepare the schema."""

    async def close(self) -> None:
        """Flush and disconnect."""

    async def ping(self) -> None:
        """Return when the backend answers; raise ``StoreUnavailable`` otherwise."""

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``."""

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it exists and belongs to ``owner``, else None."""

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""

    async def add_message(
        self, thread_id: str, role: Role, content: str, run_id: str | None
    ) -> Message:
        """Append a message to a thread; returns once it is stored."""

    async def list_messages(self, thread_id: str) -> list[Message]:
        """Return a thread's messages, oldest first."""

    async def append_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> StoredEvent:
        """Give the event the thread's next ``event_id`` and keep it."""

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events with ``event_id > after_event_id``, in order."""


_BACKENDS = {
    "memory": "chatgate.store_memory:MemoryStore",
}


def open_store(url: str) -> Store:
    """Return the store for ``url``'s scheme (not yet started).

    Raises:
        ConfigError: the scheme names no known backend.
    """
    scheme = url.partition("://")[0].partition("+")[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError("CHATGATE_DATABASE_URL", f"unknown scheme {scheme!r}; known: {known}")
    module, _, name = target.partition(":")
    factory = getattr(importlib.import_module(module), name)
    store: Store = factory(url)
    return store
