r"""A Redis broker: the instances of one deployment share events, connection counts and control.

Names, under the configured prefix ``P``:

- ``P:user:<user_id>``, a channel: the user's deliveries, each
  ``<thread_id>\n<event_id>\n<frame>``, so that the frame, encoded once by the
  publisher, reaches every socket as it is.
- ``P:control``, a channel: control messages, one JSON object each.
- ``P:conns:<user_id>``, a sorted set: the user's connections on every instance, scored by
  their expiry in Redis server time (ms). Each instance refreshes its own every third of the
  presence TTL, so the connections of an instance that died stop counting within the TTL.

Publishes that queue up while one round trip is in flight share the next one (a
pipeline), in the order they were made. One pub/sub connection per process carries
every channel. A listener task reads it, fans deliveries out to the local sinks, and
when it fails reconnects with full-jitter exponential backoff, then subscribes again to
every channel that still has a local subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from chatgate.broker import BrokerOptions, ControlHandler, Sink, Unsubscribe, call_quietly
from chatgate.errors import BrokerUnavailable, ConfigError
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery

log = get_logger("chatgate.broker")

T = TypeVar("T")

_POOL_SIZE = 64
"""Commands in flight at once per process; more wait (up to the timeout) for a connection."""
_READ_IDLE_S = 1.0
_PING_AFTER_S = 5.0
"""A pub/sub connection silent this long is pinged; one that then stays silent is replaced."""
_BACKOFF_BASE_S = 0.1
_BACKOFF_CAP_S = 5.0
_REDIS_ERRORS = (RedisError, OSError)
_jitter = random.SystemRandom()

# Both scripts read the clock of the Redis server, so instances with skewed clocks agree.
# Millisecond timestamps have 13 digits: Lua's number-to-string conversion keeps them exact.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""
"""KEYS: the user's connections. ARGV: TTL ms, limit, connection id. 1 when counted."""

_REFRESH = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return #ARGV - 1
"""
"""KEYS: the user's connections. ARGV: TTL ms, then this instance's live connection ids.

Re-adds members that are missing, so that counts come back after Redis lost its data.
"""


def encode_delivery(delivery: Delivery) -> bytes:
    """The pub/sub message carrying ``delivery``: a two-line header, then the frame as is.

    Raises:
        ValueError: the thread id holds a newline (ids are generated; never the case).
    """
    if "\n" in delivery.thread_id:
        raise ValueError("a thread id cannot hold a newline")
    return b"%s\n%d\n%s" % (delivery.thread_id.encode(), delivery.event_id, delivery.frame)


def decode_delivery(data: bytes) -> Delivery:
    """The delivery carried by a pub/sub message.

    Raises:
        ValueError: ``data`` was not made by :func:`encode_delivery`.
    """
    thread_id, event_id, frame = data.split(b"\n", 2)
    if not frame.isascii():
        # Written as a text frame as it is: it must be UTF-8 (UnicodeDecodeError is a ValueError).
        frame.decode()
    return Delivery(thread_id.decode(), int(event_id), frame)


def describe_url(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL: safe to log, it never holds credentials.

    Raises:
        ConfigError: the URL is malformed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("CHATGATE_BROKER_URL", "malformed Redis URL") from None
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme.lower()}://{host}:{port}/{db}"


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before reconnection ``attempt`` (0-based): full-jitter exponential."""
    return _jitter.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** min(attempt, 16)))


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
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._refresh = self._redis.register_script(_REFRESH)
        prefix = self.options.key_prefix
        self._prefix = prefix
        self._control_channel = f"{prefix}:control".encode()
        self._channels: dict[bytes, _Channel] = {self._control_channel: _Channel()}
        self._inflight: Counter[bytes] = Counter()
        self._handlers: list[ControlHandler] = []
        self._held: dict[str, set[str]] = {}
        self._presence_lock = asyncio.Lock()
        self._listening: AbstractConnection | None = None
        self._up: bool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outgoing: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    # Lifecycle

    async def start(self) -> None:
        """Start listening and refreshing; wait (up to the timeout) for the first subscription.

        A Redis that is down is not fatal: the listener keeps trying and ``ping`` fails meanwhile.
        """
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="broker-listener"),
            asyncio.create_task(self._refresh_forever(), name="broker-presence"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.timeout_s):
                await self._channels[self._control_channel].ready.wait()

    async def close(self) -> None:
        """Stop the background tasks, stop counting this instance's connections, disconnect."""
        tasks = [*self._tasks, *([self._sender] if self._sender else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        held, self._held = self._held, {}
        if held:
            pipe = self._redis.pipeline(transaction=False)
            for user_id, ids in held.items():
                pipe.zrem(self._conns_key(user_id), *ids)
            # Best effort: what cannot be removed now expires within the presence TTL.
            with contextlib.suppress(*_REDIS_ERRORS):
                await pipe.execute()
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

    # Deliveries

    async def publish(self, user_id: str, delivery: Delivery) -> None:
        """Publish to the user's channel; every instance fans it out to its sockets.

        Raises:
            BrokerUnavailable: Redis did not take the message.
        """
        await self._publish(self._user_channel(user_id), encode_delivery(delivery))

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
        await self._publish(self._control_channel, orjson.dumps(message))

    async def on_control(self, handler: ControlHandler) -> None:
        """Call ``handler`` for every control message until ``close``."""
        self._handlers.append(handler)

    # Connection counting

    async def acquire_connection(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count the connection unless the user already has ``limit`` on all instances.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        ttl_ms = self._ttl_ms()
        granted = await self._guarded(
            self._acquire(keys=[self._conns_key(user_id)], args=[ttl_ms, limit, connection_id])
        )
        if granted:
            self._held.setdefault(user_id, set()).add(connection_id)
        return bool(granted)

    async def release_connection(self, user_id: str, connection_id: str) -> None:
        """Stop counting the connection; never raises (it expires within the TTL anyway)."""
        async with self._presence_lock:
            ids = self._held.get(user_id)
            if ids is None or connection_id not in ids:
                return
            ids.discard(connection_id)
            if not ids:
                del self._held[user_id]
            try:
                await self._guarded(self._redis.zrem(self._conns_key(user_id), connection_id))
            except BrokerUnavailable:
                log.debug("connection left to expire", connection_id=connection_id)

    # Naming, errors

    def _user_channel(self, user_id: str) -> bytes:
        return f"{self._prefix}:user:{user_id}".encode()

    def _conns_key(self, user_id: str) -> str:
        return f"{self._prefix}:conns:{user_id}"

    def _ttl_ms(self) -> int:
        return max(1, int(self.options.presence_ttl_s * 1000))

    async def _guarded(self, operation: Awaitable[T]) -> T:
        # Socket timeouts bound each step (pool, connect, write, read); this bounds their sum.
        try:
            async with asyncio.timeout(self.options.timeout_s):
                return await operation
        except _REDIS_ERRORS as exc:  # TimeoutError is an OSError
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc

    # Publishing in pipelines

    async def _publish(self, channel: bytes, payload: bytes) -> None:
        # Publishes that queue up while a round trip is in flight all go in the next
        # pipeline: one round trip for many events, in the order they were published.
        future = asyncio.get_running_loop().create_future()
        self._outgoing.append((channel, payload, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_outgoing(), name="broker-publisher")
        await future

    async def _send_outgoing(self) -> None:
        batch: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        try:
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                pipe = self._redis.pipeline(transaction=False)
                for channel, payload, _ in batch:
                    pipe.publish(channel, payload)
                try:
                    async with asyncio.timeout(self.options.timeout_s):
                        await pipe.execute()
                except _REDIS_ERRORS as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
        finally:
            self._sender = None
            # Cancelled (the broker is closing) or broken: no publisher may wait forever.
            pending, self._outgoing = [*batch, *self._outgoing], []
            _settle(pending, RedisConnectionError("publisher stopped"))

    # Keeping this instance's connections counted

    async def _refresh_forever(self) -> None:
        interval = self.options.presence_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            # An outage is logged once by the listener; the next round tries again.
            with contextlib.suppress(BrokerUnavailable, *_REDIS_ERRORS):
                await self._refresh_held()

    async def _refresh_held(self) -> None:
        # Under the lock so that a refresh never re-adds a connection released meanwhile.
        async with self._presence_lock:
            if not self._held:
                return
            ttl_ms = self._ttl_ms()
            pipe = self._redis.pipeline(transaction=False)
            for user_id, ids in self._held.items():
                await self._refresh(
                    keys=[self._conns_key(user_id)], args=[ttl_ms, *ids], client=pipe
                )
            await self._guarded(pipe.execute())

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

    async def _listen_once(self) -> None:
        """Connect, subscribe to every wanted channel, then read until the connection fails."""
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
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
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        pinged = False
        while True:
            response = await conn.read_response(timeout=_READ_IDLE_S)
            now = loop.time()
            if response is not None:
                last_heard, pinged = now, False
                self._dispatch(response)
                continue
            silent = now - last_heard
            if silent > _PING_AFTER_S + self.options.timeout_s:
                raise RedisConnectionError("pub/sub connection stopped answering")
            if silent > _PING_AFTER_S and not pinged:
                await conn.send_command(b"PING")
                pinged = True

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
            delivery = decode_delivery(data)
        except ValueError:
            log.warning("malformed delivery dropped", channel=name.decode(errors="replace"))
            return
        for sink in tuple(channel.sinks):
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


def _settle(
    batch: list[tuple[bytes, bytes, asyncio.Future[None]]], exc: BaseException | None
) -> None:
    """Resolve the publishers' futures; a publisher that gave up (cancelled) is skipped."""
    for _, _, future in batch:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            error = BrokerUnavailable(f"redis: {type(exc).__name__}")
            error.__cause__ = exc
            future.set_exception(error)
