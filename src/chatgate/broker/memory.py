"""An in-process broker: fan-out, connection counting and control within one process."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from chatgate.broker.base import BrokerOptions, ControlHandler, Sink, Unsubscribe, call_quietly
from chatgate.models import Delivery


class MemoryBroker:
    """Delivers synchronously to the sinks subscribed in this process."""

    kind = "memory"
    shared = False

    def __init__(self, url: str = "memory://", options: BrokerOptions | None = None) -> None:
        self.url = url
        self.options = options or BrokerOptions()
        self._sinks: dict[str, list[Sink]] = defaultdict(list)
        self._connections: dict[str, set[str]] = defaultdict(set)
        self._control: list[ControlHandler] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Drop every subscription, count and control handler."""
        self._sinks.clear()
        self._connections.clear()
        self._control.clear()

    async def ping(self) -> None:
        """Always answers."""

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Hand the delivery to each of the user's sinks (a failing sink is logged, not raised)."""
        for sink in tuple(self._sinks.get(user_id, ())):
            call_quietly(sink, delivery)

    # Delivering here takes no wait: queued is delivered.
    publish_soon = publish

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
        if connection_id not in open_ and len(open_) >= limit:
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

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Hand ``message`` to every control handler of this process."""
        for handler in tuple(self._control):
            call_quietly(handler, message)

    async def on_control(self, handler: ControlHandler) -> None:
        """Register ``handler`` until ``close``."""
        self._control.append(handler)
