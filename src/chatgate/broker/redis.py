r"""A Redis broker: the instances of one deployment share events, connection counts and control.

Names, under the configured prefix ``P``:

- ``P:user:<user_id>``, a channel: the user's deliveries, one message each
  ``<thread_id>\n<event_id>\n<frame>``, or several in one message
  (``redis_wire.encode_deliveries``), so that the frame, encoded once by the
  publisher, reaches every socket as it is.
- ``P:control``, a channel: control messages, one JSON object each.
- ``P:conns:<user_id>``, a sorted set: the user's connections on every instance, scored by
  their expiry in Redis server time (ms). Each instance refreshes its own every third of the
  presence TTL, so the connections of an instance that died stop counting within the TTL.

Publishes that queue up while one round trip is in flight share the next one (a
pipeline, on a connection of its own), in the order they were made
(``broker.redis_publisher``). One pub/sub connection per process carries every
channel. A listener task reads it, fans deliveries out to the local sinks, and
when it fails reconnects with full-jitter exponential backoff, then subscribes
again to every channel that still has a local subscriber; a watchdog replaces
it when it stays silent. Other commands share a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from chatgate.broker.base import BrokerOptions, ControlHandler, Sink, Unsubscribe, call_quietly
from chatgate.broker.redis_presence import RedisPresence
from chatgate.broker.redis_publisher import RedisPublisher
from chatgate.broker.redis_wire import (
    backoff_delay,
    check_delivery,
    decode_deliveries,
    describe_url,
)
from chatgate.errors import BrokerUnavailable, ConfigError
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery

log = get_logger("chatgate.broker.redis")

T = TypeVar("T")

_POOL_SIZE = 64
"""Commands in flight at once per process; more wait (up to the timeout) for a connection."""
_WATCH_EVERY_S = 1.0
"""How often the watchdog looks at the pub/sub connection."""
_PING_AFTER_S = 5.0
"""A pub/sub connection silent this long is pinged; one that then stays silent is replaced."""
_REDIS_ERRORS = (RedisError, OSError)


@dataclass(slots=True)
class _Hearing:
    """What the pub/sub reader heard, for the watchdog that replaces a silent connection."""

    replies: int = 0
    stopped: bool = False
    """Set by the watchdog as it stops the reader."""


@dataclass(slots=True)
class _Channel:
    """A channel this process wants: its local sinks, and whether Redis confirmed it."""

    sinks: list[Sink] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class RedisBroker:
    """Delivers through Redis pub/sub and counts connections in Redis, for many instances.

    Raises:
        ConfigError: (on construction) the URL is malformed.
    """

    kind = "redis"
    shared = True

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.options = options or BrokerOptions()
        self.url = describe_url(url)
        timeout = self.options.timeout_s
        try:
            self._pool = BlockingConnectionPool.from_url(
                url,
                max_connections=_POOL_SIZE,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # Failing fast is the point: callers map the failure to 1013 or a 503,
                # and the listener has its own backoff.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                # RESP2: every Redis-compatible server speaks it, and pub/sub messages
                # arrive as plain replies rather than through the RESP3 push handler.
                protocol=2,
            )
        except ValueError:
            raise ConfigError("CHATGATE_BROKER_URL", "malformed Redis URL") from None
        self._redis: Redis = Redis.from_pool(self._pool)
        prefix = self.options.key_prefix
        self._prefix = prefix
        self._control_channel = f"{prefix}:control".encode()
        self._channels: dict[bytes, _Channel] = {self._control_channel: _Channel()}
        self._inflight: Counter[bytes] = Counter()
        self._handlers: list[ControlHandler] = []
        self._presence = RedisPresence(self._redis, prefix, self.options, self._guarded)
        self._listening: AbstractConnection | None = None
        self._up: bool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher = RedisPublisher(
            functools.partial(self._own_connection, socket_timeout=None), timeout
        )

    # Lifecycle

    async def start(self) -> None:
        """Start listening and refreshing; wait (up to the timeout) for the first subscription.

        Called again after a failure, it waits again: the listener keeps trying
        in the background meanwhile.

        Raises:
            BrokerUnavailable: Redis did not confirm the subscription in time
                (boot retries until CHATGATE_STARTUP_TIMEOUT_S, then stops).
        """
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._listen_forever(), name="broker-listener"),
                asyncio.create_task(self._presence.refresh_forever(), name="broker-presence"),
            ]
        try:
            async with asyncio.timeout(self.options.timeout_s):
                await self._channels[self._control_channel].ready.wait()
        except TimeoutError:
            raise BrokerUnavailable(f"redis broker unavailable at {self.url}") from None

    async def close(self) -> None:
        """Stop the background tasks, stop counting this instance's connections, disconnect."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._publisher.close()
        self._tasks = []
        await self._presence.release_all()
        self._handlers.clear()
        await self._redis.aclose()

    async def ping(self) -> None:
        """Return when Redis answers and this process is subscribed.

        Raises:
            BrokerUnavailable: Redis does not answer, or the listener is still reconnecting.
        """
        await self._guarded(self._redis.ping())
        if not self._channels[self._control_channel].ready.is_set():
            raise BrokerUnavailable("redis: pub/sub connection is reconnecting")

    def observe_publishes(self, observer: Callable[[float, int], None]) -> None:
        """Tell ``observer`` each publishing round trip's duration and event count (metrics)."""
        self._publisher.observer = observer

    # Deliveries

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Publish to the user's channel; every instance fans it out to its sockets.

        Raises:
            BrokerUnavailable: Redis did not take the message.
        """
        check_delivery(delivery)
        await self._publisher.publish(self._user_channel(user_id), delivery)

    async def publish_soon(self, user_id: str, delivery: Delivery) -> None:
        """Queue the delivery for the next pipeline and return; wait while too many are queued.

        A pipeline that fails logs how many of these deliveries it lost.
        """
        check_delivery(delivery)
        await self._publisher.publish_soon(self._user_channel(user_id), delivery)

    async def subscribe(self, user_id: str, sink: Sink) -> Unsubscribe:
        """Add ``sink`` to the user's channel, subscribing in Redis for the first local sink.

        Raises:
            BrokerUnavailable: Redis did not confirm the subscription within the timeout.
        """
        name = self._user_channel(user_id)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel()
            await self._send_subscription(b"SUBSCRIBE", name)
        channel.sinks.append(sink)

        async def unsubscribe() -> None:
            current = self._channels.get(name)
            if current is None or sink not in current.sinks:
                return
            current.sinks.remove(sink)
            if not current.sinks:
                del self._channels[name]
                await self._send_subscription(b"UNSUBSCRIBE", name)

        try:
            async with asyncio.timeout(self.options.timeout_s):
                await channel.ready.wait()
        except TimeoutError:
            await unsubscribe()
            raise BrokerUnavailable("redis: subscription not confirmed in time") from None
        return unsubscribe

    # Control

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every instance's control handlers, this one's included.

        Raises:
            BrokerUnavailable: Redis did not take the message.
        """
        await self._publisher.publish(self._control_channel, orjson.dumps(message))

    async def on_control(self, handler: ControlHandler) -> None:
        """Call ``handler`` for every control message until ``close``."""
        self._handlers.append(handler)

    # Connection counting

    async def acquire_connection(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count the connection unless the user already has ``limit`` on all instances.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        return await self._presence.acquire(user_id, connection_id, limit)

    async def release_connection(self, user_id: str, connection_id: str) -> None:
        """Stop counting the connection; never raises (it expires within the TTL anyway)."""
        await self._presence.release(user_id, connection_id)

    # Naming, errors

    def _user_channel(self, user_id: str) -> bytes:
        return f"{self._prefix}:user:{user_id}".encode()

    async def _guarded(self, operation: Awaitable[T]) -> T:
        # Socket timeouts bound each step (pool, connect, write, read); this bounds their sum.
        try:
            async with asyncio.timeout(self.options.timeout_s):
                return await operation
        except _REDIS_ERRORS as exc:  # TimeoutError is an OSError
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc

    # The pub/sub listener

    async def _listen_forever(self) -> None:
        attempt = 0
        while True:
            was_up = self._up
            try:
                await self._listen_once()
            except _REDIS_ERRORS as exc:
                was_up = self._up
                self._went_down(exc)
            except Exception:
                # Documented edge: this task outlives every request, and if it died
                # silently no socket of this process would get another event.
                log.exception("broker listener failed", correlation_id=correlation_id())
            # After a working session the first retry comes fast; then it backs off.
            attempt = 0 if was_up else attempt + 1
            await asyncio.sleep(backoff_delay(attempt))

    def _own_connection(self, **overrides: Any) -> AbstractConnection:
        """A connection outside the pool, with the pool's settings and ``overrides``."""
        return self._pool.connection_class(**{**self._pool.connection_kwargs, **overrides})

    async def _listen_once(self) -> None:
        """Connect, subscribe to every wanted channel, then read until the connection fails."""
        conn = self._own_connection()
        self._inflight.clear()
        try:
            # The first SUBSCRIBE connects: there is always the control channel to send.
            await self._subscribe_all(conn)
            self._listening = conn
            await self._read(conn)
        finally:
            self._listening = None
            for channel in self._channels.values():
                channel.ready.clear()
            with contextlib.suppress(*_REDIS_ERRORS):
                await conn.disconnect(nowait=True)

    async def _subscribe_all(self, conn: AbstractConnection) -> None:
        """Subscribe the connection to the wanted channels, which may change meanwhile."""
        subscribed: set[bytes] = set()
        while True:
            wanted = set(self._channels)
            missing = wanted - subscribed
            extra = subscribed - wanted
            if not missing and not extra:
                return
            if missing:
                # The control channel goes last: its confirmation vouches for the whole batch.
                names = sorted(missing, key=lambda name: name == self._control_channel)
                self._inflight.update(names)
                await conn.send_command(b"SUBSCRIBE", *names)
                subscribed |= missing
            if extra:
                self._inflight.update(extra)
                await conn.send_command(b"UNSUBSCRIBE", *extra)
                subscribed -= extra

    async def _send_subscription(self, command: bytes, name: bytes) -> None:
        conn = self._listening
        if conn is None:
            return  # the listener subscribes to every wanted channel once it is connected
        self._inflight[name] += 1
        try:
            await conn.send_command(command, name)
        except _REDIS_ERRORS:
            # The listener reads the same connection: it sees the failure and resubscribes.
            log.debug("subscription change not sent; the listener will reconnect")

    async def _read(self, conn: AbstractConnection) -> None:
        # Reads wait with no timeout of their own (math.inf: redis-py's "block";
        # releases before it read it as a timeout that never fires), where a
        # per-read timeout would arm and cancel a timer for every message; a
        # watchdog looks at the connection once a second instead.
        reader = asyncio.current_task()
        assert reader is not None  # noqa: S101 - awaited, so in a task
        hearing = _Hearing()
        watchdog = asyncio.create_task(self._watch(conn, hearing, reader), name="broker-watchdog")
        try:
            while True:
                response = await conn.read_response(timeout=math.inf)
                hearing.replies += 1
                self._dispatch(response)
        except asyncio.CancelledError:
            # The watchdog's cancel becomes a connection failure (and a reconnection);
            # any other cancel (the broker closing) stays one.
            if hearing.stopped and reader.uncancel() == 0:
                raise RedisConnectionError("pub/sub connection stopped answering") from None
            raise
        finally:
            watchdog.cancel()

    async def _watch(
        self, conn: AbstractConnection, hearing: _Hearing, reader: asyncio.Task[Any]
    ) -> None:
        """Ping the connection once silent; stop ``reader`` when it stays silent."""
        loop = asyncio.get_running_loop()
        heard, since, pinged = hearing.replies, loop.time(), False
        while True:
            await asyncio.sleep(_WATCH_EVERY_S)
            now = loop.time()
            if hearing.replies != heard:
                heard, since, pinged = hearing.replies, now, False
                continue
            silent = now - since
            if silent > _PING_AFTER_S + self.options.timeout_s:
                break
            if silent > _PING_AFTER_S and not pinged:
                pinged = True
                try:
                    async with asyncio.timeout(self.options.timeout_s):
                        await conn.send_command(b"PING")
                except _REDIS_ERRORS:
                    break
        hearing.stopped = True
        reader.cancel()

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 3:  # noqa: PLR2004 - [kind, channel, data]
            return  # a pong: it only proves the connection alive
        kind, name, data = response[0], response[1], response[2]
        if kind == b"message":
            if name == self._control_channel:
                self._on_control_message(data)
            else:
                self._on_delivery(name, data)
        elif kind in {b"subscribe", b"unsubscribe"}:
            self._confirmed(name, subscribed=kind == b"subscribe")

    def _confirmed(self, name: bytes, *, subscribed: bool) -> None:
        # Redis confirms each (un)subscribe in order: a channel is ready once the last
        # command sent for it was a subscribe and every command has been confirmed.
        left = self._inflight[name] - 1
        if left > 0:
            self._inflight[name] = left
            return
        self._inflight.pop(name, None)
        channel = self._channels.get(name)
        if subscribed and channel is not None:
            channel.ready.set()
            if name == self._control_channel:
                self._went_up()

    def _on_delivery(self, name: bytes, data: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None or not channel.sinks:
            return
        try:
            deliveries = decode_deliveries(data)
        except ValueError:
            log.warning("malformed delivery dropped", channel=name.decode(errors="replace"))
            return
        sinks = tuple(channel.sinks)
        for delivery in deliveries:
            for sink in sinks:
                call_quietly(sink, delivery)

    def _on_control_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            log.warning("malformed control message dropped")
            return
        for handler in tuple(self._handlers):
            call_quietly(handler, message)

    def _went_down(self, exc: BaseException) -> None:
        if self._up is not False:
            log.warning(
                "broker unavailable; reconnecting in the background",
                broker=self.url,
                error=type(exc).__name__,
            )
        self._up = False

    def _went_up(self) -> None:
        if self._up is False:
            log.info("broker available again", broker=self.url)
        self._up = True
