"""Publishing to Redis in pipelines: publishes queued during a round trip share the next one.

One sender task at a time takes every queued publish and sends them as one
pipeline (no transaction), in the order they were made, on a connection of its
own; then the publishers that wait hear how it went. The deliveries queued for
one channel share one message (``redis_wire.encode_deliveries``): a turn's
events cost the subscribers one read, not one each. Channels are independent (a socket
listens to its user's only), so only a control message, which every instance
reads, keeps its place between deliveries. A publisher may also not wait (``publish_soon``):
its delivery is queued and the call returns, unless too many are queued, in
which case it waits for a round trip like the others. A pipeline that fails
fails the waiting publishers with ``BrokerUnavailable`` and logs how many of
the others' deliveries it lost: their events are in the store, and sockets get
them through ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from chatgate.broker.redis_wire import MANY_MAX_BYTES, encode_deliveries
from chatgate.errors import BrokerUnavailable
from chatgate.logs import get_logger
from chatgate.models import Delivery

log = get_logger("chatgate.broker.redis")

_REDIS_ERRORS = (RedisError, OSError)
QUEUED_MAX = 4096
"""Publishes queued and not yet taken by a pipeline past which ``publish_soon`` waits."""

_Outgoing = tuple[bytes, "Delivery | bytes", "asyncio.Future[None] | None"]
"""A queued publish: channel, delivery (or a message as is), and the future of a publisher
that waits (or None)."""


class RedisPublisher:
    """Sends this process's publishes in pipelines, in the order they were made."""

    def __init__(self, connect: Callable[[], AbstractConnection], timeout_s: float) -> None:
        """Publish on a connection that ``connect`` makes; a round trip takes ``timeout_s`` at most.

        The connection must have no socket timeout: the round trip's one timeout
        bounds it whole, where redis-py would start a task for the write and arm
        a timer for each reply (more than the publishes themselves cost).
        """
        self._connect = connect
        self._connection: AbstractConnection | None = None
        self._timeout_s = timeout_s
        self._outgoing: list[_Outgoing] = []
        self._sender: asyncio.Task[None] | None = None
        self.observer: Callable[[float, int], None] | None = None
        """Told each round trip's duration in seconds and how many publishes it carried."""

    async def publish(self, channel: bytes, payload: Delivery | bytes) -> None:
        """Publish a delivery (checked by the caller) or a message, and return once Redis took it.

        Raises:
            BrokerUnavailable: the pipeline holding it failed.
        """
        future = asyncio.get_running_loop().create_future()
        self._queue((channel, payload, future))
        await future

    async def publish_soon(self, channel: bytes, payload: Delivery) -> None:
        """Queue the publish behind the earlier ones and return; wait while too many are queued."""
        if len(self._outgoing) < QUEUED_MAX:
            self._queue((channel, payload, None))
            return
        with contextlib.suppress(BrokerUnavailable):
            await self.publish(channel, payload)

    async def close(self) -> None:
        """Stop sending; whoever still waits fails, and lost deliveries are logged."""
        sender = self._sender
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._connection.disconnect(nowait=True)

    def _queue(self, outgoing: _Outgoing) -> None:
        self._outgoing.append(outgoing)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="broker-publisher")

    async def _send_all(self) -> None:
        batch: list[_Outgoing] = []
        try:
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                commands = [(b"PUBLISH", *message) for message in pipeline_messages(batch)]
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await self._round_trip(commands)
                except _REDIS_ERRORS as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
                if self.observer is not None:
                    self.observer(time.perf_counter() - started, len(batch))
                batch = []
        finally:
            self._sender = None
            # Cancelled (the broker is closing) or broken: no publisher may wait forever.
            pending, self._outgoing = [*batch, *self._outgoing], []
            if pending:
                _settle(pending, RedisConnectionError("publisher stopped"))

    async def _round_trip(self, commands: list[tuple[bytes, bytes, bytes]]) -> None:
        connection = self._connection
        if connection is None or not connection.is_connected:
            await self._send(commands)
            return
        try:
            await self._send(commands)
        except RedisConnectionError:
            # A connection that sat idle may have been closed by Redis meanwhile
            # (a restart, a server-side idle timeout): one more try on a new one.
            # Repeating a publish is harmless: sockets drop an event they had,
            # and cancelling a run twice cancels it once.
            await self._send(commands)

    async def _send(self, commands: list[tuple[bytes, bytes, bytes]]) -> None:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._connect()
        try:
            # Connects first when it is not connected.
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
            for _ in commands:
                await connection.read_response()
        except BaseException:
            # Replies may be left unread: the connection cannot serve again.
            await connection.disconnect(nowait=True)
            raise


def pipeline_messages(batch: list[_Outgoing]) -> list[tuple[bytes, bytes]]:
    """The messages that carry ``batch``: its deliveries to one channel together, in order.

    A message (a control message) stays where it was queued: the deliveries
    queued before it go before it. A message of several deliveries takes up to
    :data:`MANY_MAX_BYTES` of frames.
    """
    messages: list[tuple[bytes, bytes]] = []
    waiting: dict[bytes, list[Delivery]] = {}
    sizes: dict[bytes, int] = {}
    for channel, payload, _ in batch:
        if isinstance(payload, bytes):
            messages += [(name, encode_deliveries(group)) for name, group in waiting.items()]
            waiting.clear()
            sizes.clear()
            messages.append((channel, payload))
            continue
        group = waiting.get(channel)
        size = sizes.get(channel, 0) + len(payload.frame)
        if group is None or size > MANY_MAX_BYTES:
            if group is not None:
                messages.append((channel, encode_deliveries(group)))
            waiting[channel] = group = []
            size = len(payload.frame)
        group.append(payload)
        sizes[channel] = size
    messages += [(name, encode_deliveries(group)) for name, group in waiting.items()]
    return messages


def _settle(batch: list[_Outgoing], exc: BaseException | None) -> None:
    """Resolve the publishers' futures; a publisher that gave up (cancelled) is skipped.

    Deliveries nobody waits for, lost with the batch, are logged: how many.
    """
    unheard = 0
    for _, _, future in batch:
        if future is None:
            unheard += 1
            continue
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            error = BrokerUnavailable(f"redis: {type(exc).__name__}")
            error.__cause__ = exc
            future.set_exception(error)
    if exc is not None and unheard:
        # Their events are in the store: sockets get them through resume.
        log.warning(
            "events not delivered live: broker unavailable",
            events=unheard,
            error=type(exc).__name__,
        )
