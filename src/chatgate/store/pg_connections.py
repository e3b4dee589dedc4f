"""A few kept asyncpg connections, lent one statement or transaction at a time.

asyncpg's own pool costs about as much CPU per checkout as the statement run
on the connection (futures, a task and a timeout per acquire and release); on
the chat path every read is one checkout. Here a checkout of an idle
connection is a ``deque.pop``, and a release an ``append``.

Connections are opened when needed, up to ``size``, and kept: opening one (TLS
negotiation, authentication) costs more than many queries. A connection the
server dropped is noticed by asyncpg (``is_closed``) and replaced at the next
checkout. One released inside a transaction (a cancelled caller) is closed
rather than lent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg


class Connections:
    """Up to ``size`` connections opened by ``connect``, lent to one caller at a time."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int, wait_s: float
    ) -> None:
        self._connect = connect
        self._size = size
        self._wait_s = wait_s
        self._idle: deque[asyncpg.Connection] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._lent: set[asyncpg.Connection] = set()
        self._opening = 0
        self._closed = False

    @property
    def open(self) -> int:
        """Connections kept, lent or being opened."""
        return len(self._idle) + len(self._lent) + self._opening

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of one's own until the block ends.

        Raises:
            TimeoutError: none came free within ``wait_s``.
            OSError, asyncpg.PostgresError: a new connection could not be opened.
        """
        conn = self._take() or await self._wait()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _take(self) -> asyncpg.Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                self._lent.add(conn)
                return conn
        return None

    async def _wait(self) -> asyncpg.Connection:
        async with asyncio.timeout(self._wait_s):
            while True:
                if self._closed:
                    raise ConnectionError("the connections are closed")
                conn = self._take()
                if conn is not None:
                    return conn
                if self.open < self._size:
                    return await self._open_one()
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    async def _open_one(self) -> asyncpg.Connection:
        self._opening += 1
        try:
            conn = await self._connect()
        finally:
            self._opening -= 1
        if self._closed:
            await conn.close()
            raise ConnectionError("the connections are closed")
        self._lent.add(conn)
        return conn

    def _give_back(self, conn: asyncpg.Connection) -> None:
        self._lent.discard(conn)
        if conn.is_closed():
            pass
        elif self._closed or conn.is_in_transaction():
            # Left mid-transaction by a cancelled caller: its state is unknown.
            conn.terminate()
        else:
            self._idle.append(conn)
        # A waiter may take the connection, or open one in place of a lost one.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def close(self) -> None:
        """Close the idle connections now, the lent ones when given back."""
        self._closed = True
        idle, self._idle = list(self._idle), deque()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for conn in idle:
            with contextlib.suppress(
                OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError
            ):
                await conn.close(timeout=5)
