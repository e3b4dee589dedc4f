"""An in-process broker: fan-out and connection counting within one process."""

from __future__ import annotations

from collections import defaultdict

from chatgate.broker import Sink, Unsubscribe
from chatgate.models import Delivery


class MemoryBroker:
    """Delivers synchronously to the sinks subscribed in this process."""

    kind = "memory"

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._sinks: dict[str, list[Sink]] = defaultdict(list)
        self._connections: dict[str, set[str]] = defaultdict(set)

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Drop every subscription."""
        self._sinks.clear()

    async def ping(self) -> None:
        """Always answers."""

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Hand the delivery to each of the user's sinks."""
        for sink in tuple(self._sinks.get(user_id, ())):
            sink(delivery)

    async def subscribe(self, user_id: str, sink: Sink) -> Unsubscribe:
        """Register ``sink``; the returned coroutine function removes it."""
        self._sinks[user_id].append(sink)

        async def unsubscribe() -> None:
            sinks = self._sinks.get(user_id)
            if sinks is not None and sink in sinks:
                sinks.remove(sink)
                if not sinks:
                    del self._sinks[user_id]

        return unsubscribe

    async def acquire_connection(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count the connection unless the user already has ``limit``."""
        open_ = self._connections[user_id]
        if len(open_) >= limit:
            return False
        open_.add(connection_id)
        return True

    async def release_connection(self, user_id: str, connection_id: str) -> None:
        """Forget the connection."""
        open_ = self._connections.get(user_id)
        if open_ is not None:
            open_.discard(connection_id)
            if not open_:
                del self._connections[user_id]
