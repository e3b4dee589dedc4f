"""The ``Broker`` interface: delivering a user's events to all of the user's sockets.

Also counts each user's open connections, so that the per-user limit holds
across every instance that shares the broker. Backends live in
``broker_<kind>.py`` and are chosen by the scheme of ``CHATGATE_BROKER_URL``.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from chatgate.errors import ConfigError
from chatgate.models import Delivery

Sink = Callable[[Delivery], None]
"""Called, without awaiting, for each delivery to one socket; must not block."""

Unsubscribe = Callable[[], Awaitable[None]]


class Broker(Protocol):
    """Fan-out of events per user, and per-user connection counting."""

    kind: str

    async def start(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Disconnect."""

    async def ping(self) -> None:
        """Return when the broker answers; raise ``BrokerUnavailable`` otherwise."""

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Deliver to every socket of ``user_id``, in publish order."""

    async def subscribe(self, user_id: str, sink: Sink) -> Unsubscribe:
        """Call ``sink`` for each delivery to ``user_id`` until unsubscribed."""

    async def acquire_connection(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count a new connection of ``user_id``; False when that would pass ``limit``."""

    async def release_connection(self, user_id: str, connection_id: str) -> None:
        """Stop counting a connection."""


_BACKENDS = {
    "memory": "chatgate.broker_memory:MemoryBroker",
}


def open_broker(url: str) -> Broker:
    """Return the broker for ``url``'s scheme (not yet started).

    Raises:
        ConfigError: the scheme names no known backend.
    """
    scheme = url.partition("://")[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError("CHATGATE_BROKER_URL", f"unknown scheme {scheme!r}; known: {known}")
    module, _, name = target.partition(":")
    factory = getattr(importlib.import_module(module), name)
    broker: Broker = factory(url)
    return broker
