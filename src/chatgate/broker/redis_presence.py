"""Counting each user's connections across every instance that shares one Redis.

``P:conns:<user_id>`` is a sorted set of the user's connection ids, scored by
their expiry in Redis server time. Each instance re-adds its own every third of
the presence TTL, so that the connections of an instance that died stop
counting within the TTL, and counts come back after Redis lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.broker.base import BrokerOptions
from chatgate.broker.redis_wire import ACQUIRE, REFRESH
from chatgate.errors import BrokerUnavailable
from chatgate.logs import get_logger

log = get_logger("chatgate.broker.redis")

_REDIS_ERRORS = (RedisError, OSError)

Guard = Callable[[Awaitable[Any]], Awaitable[Any]]
"""Runs one Redis operation within the broker timeout, raising BrokerUnavailable."""


class RedisPresence:
    """This instance's share of the per-user connection counts."""

    def __init__(self, redis: Redis, prefix: str, options: BrokerOptions, guard: Guard) -> None:
        self._redis = redis
        self._prefix = prefix
        self._options = options
        self._guard = guard
        self._acquire = redis.register_script(ACQUIRE)
        self._refresh = redis.register_script(REFRESH)
        self._held: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count the connection unless the user already has ``limit`` on all instances.

        Raises:
            BrokerUnavailable: Redis did not answer.
        """
        ttl_ms = self._ttl_ms()
        granted = await self._guard(
            self._acquire(keys=[self._key(user_id)], args=[ttl_ms, limit, connection_id])
        )
        if granted:
            self._held.setdefault(user_id, set()).add(connection_id)
        return bool(granted)

    async def release(self, user_id: str, connection_id: str) -> None:
        """Stop counting the connection; never raises (it expires within the TTL anyway)."""
        async with self._lock:
            ids = self._held.get(user_id)
            if ids is None or connection_id not in ids:
                return
            ids.discard(connection_id)
            if not ids:
                del self._held[user_id]
            try:
                await self._guard(self._redis.zrem(self._key(user_id), connection_id))
            except BrokerUnavailable:
                log.debug("connection left to expire", connection_id=connection_id)

    async def release_all(self) -> None:
        """Stop counting every connection of this instance, as far as Redis answers."""
        held, self._held = self._held, {}
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for user_id, ids in held.items():
            pipe.zrem(self._key(user_id), *ids)
        # Best effort: what cannot be removed now expires within the presence TTL.
        with contextlib.suppress(*_REDIS_ERRORS):
            await pipe.execute()

    async def refresh_forever(self) -> None:
        """Re-add this instance's connections every third of the TTL, until cancelled."""
        interval = self._options.presence_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            # An outage is logged once by the listener; the next round tries again.
            with contextlib.suppress(BrokerUnavailable, *_REDIS_ERRORS):
                await self.refresh_held()

    async def refresh_held(self) -> None:
        """Re-add this instance's connections with a fresh expiry, in one pipeline."""
        # Under the lock so that a refresh never re-adds a connection released meanwhile.
        async with self._lock:
            if not self._held:
                return
            ttl_ms = self._ttl_ms()
            pipe = self._redis.pipeline(transaction=False)
            for user_id, ids in self._held.items():
                await self._refresh(keys=[self._key(user_id)], args=[ttl_ms, *ids], client=pipe)
            await self._guard(pipe.execute())

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}:conns:{user_id}"

    def _ttl_ms(self) -> int:
        return max(1, int(self._options.presence_ttl_s * 1000))
