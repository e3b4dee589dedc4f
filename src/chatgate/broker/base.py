"""The ``Broker`` interface: delivering a user's events to all of the user's sockets.

Also counts each user's open connections, so that the per-user limit holds
across every instance that shares the broker, and carries control messages
(such as "cancel this run") to every instance. Backends live in
``chatgate/broker/<kind>.py`` and are chosen by the scheme of ``CHATGATE_BROKER_URL``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from chatgate.backends import Backend, load_backend
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery
from chatgate.settings import Settings

log = get_logger("chatgate.broker.base")

T = TypeVar("T")

Sink = Callable[[Delivery], None]
"""Called, without awaiting, for each delivery to one socket; must not block."""

ControlHandler = Callable[[dict[str, Any]], None]
"""Called, without awaiting, for each control message; must not block."""

Unsubscribe = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """Tuning shared by every backend; a backend ignores what it has no use for."""

    presence_ttl_s: float = 30.0
    """A connection that nobody refreshes stops counting after this long."""
    key_prefix: str = "chatgate"
    """Namespace of every key and channel, so deployments can share one server."""
    timeout_s: float = 2.0
    """Longest wait for one broker operation before ``BrokerUnavailable``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerOptions:
        """The options configured by ``settings``."""
        return cls(
            presence_ttl_s=settings.presence_ttl_s,
            key_prefix=settings.broker_key_prefix,
            timeout_s=settings.broker_timeout_s,
        )


class Broker(Protocol):
    """Fan-out of events per user, per-user connection counting, control messages.

    Every method that talks to a remote broker raises ``BrokerUnavailable`` when it
    does not answer within the configured timeout, except ``release_connection``
    and unsubscribing, which never raise.
    """

    kind: str
    shared: bool
    """Whether other instances can share this broker (and so the user's runs and sockets)."""

    async def start(self) -> None:
        """Connect; a broker that is down is retried in the background, not fatal."""

    async def close(self) -> None:
        """Stop counting this instance's connections, and disconnect."""

    async def ping(self) -> None:
        """Return when the broker answers and delivers; raise ``BrokerUnavailable`` otherwise."""

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Deliver to every socket of ``user_id`` on every instance, in publish order."""

    async def publish_soon(self, user_id: str, delivery: Delivery) -> None:
        """As ``publish``, but return once the delivery is queued behind earlier ones.

        Waits only while the broker holds too many deliveries not yet taken.
        Never raises for the broker's state: a delivery the broker does not
        take is logged (how many), since its event is in the store and sockets
        get it through ``resume``.
        """

    async def subscribe(self, user_id: str, sink: Sink) -> Unsubscribe:
        """Call ``sink`` for each delivery to ``user_id`` published from now on.

        Returns once deliveries published after the call are certain to reach
        ``sink``; the returned coroutine function stops them.
        """

    async def acquire_connection(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count a new connection of ``user_id``; False when that would pass ``limit``."""

    async def release_connection(self, user_id: str, connection_id: str) -> None:
        """Stop counting a connection (at the latest after the presence TTL)."""

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Send ``message``, a JSON object, to the control handlers of every instance."""

    async def on_control(self, handler: ControlHandler) -> None:
        """Call ``handler`` for every control message from any instance until ``close``."""


def call_quietly(callback: Callable[[T], None], argument: T) -> None:
    """Run a sink or control handler; its failure must not stop the others or the broker."""
    try:
        callback(argument)
    except Exception:
        # Documented edge: callbacks belong to connections and run managers, and one
        # broken socket must not starve the others of their deliveries.
        log.exception("broker callback failed", correlation_id=correlation_id())


_BACKENDS = {
    "memory": Backend("chatgate.broker.memory:MemoryBroker"),
    "redis": Backend("chatgate.broker.redis:RedisBroker", extra="redis"),
    "rediss": Backend("chatgate.broker.redis:RedisBroker", extra="redis"),
}


def open_broker(url: str, options: BrokerOptions | None = None) -> Broker:
    """Return the broker for ``url``'s scheme (not yet started).

    Raises:
        ConfigError: the scheme names no known backend, or the URL is malformed.
    """
    scheme = url.partition("://")[0].lower()
    factory: Any = load_backend("CHATGATE_BROKER_URL", scheme, _BACKENDS)
    broker: Broker = factory(url, options or BrokerOptions())
    return broker
