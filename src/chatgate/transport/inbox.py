"""The two waitable objects of a WebSocket protocol, sized for sockets that sit idle.

uvicorn gives every socket an ``asyncio.Queue`` of ASGI messages and an
``asyncio.Event`` saying whether the transport takes writes. Between them they
hold five deques (about 760 bytes each, allocated up front) and a second
Event; an idle socket needs none of it. :class:`Inbox` and :class:`Writable`
offer exactly the methods uvicorn's protocol calls on them, and hold storage
only while a message waits or a writer is blocked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Inbox:
    """ASGI messages waiting for the app, in order; one receiver at a time.

    An ASGI app receives from one task: a second receive while one waits is a
    bug of the app, and raises ``RuntimeError`` instead of racing the first.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        """Queue a message and wake the receiver."""
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        waiter = self._waiter
        if waiter is not None:
            # The receiver holds the future while it waits; the inbox lets go.
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def empty(self) -> bool:
        """Whether no message waits."""
        return self._items is None

    def get_nowait(self) -> Any:
        """The oldest message (raises ``IndexError`` when none waits)."""
        items = self._items
        if items is None:
            raise IndexError("no message waits")
        item = items.popleft()
        if not items:
            # Storage goes with the last message: most sockets are idle.
            self._items = None
        return item

    def arrival(self) -> asyncio.Future[None]:
        """A future done once a message is queued (await it while :meth:`empty`)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            raise RuntimeError("another receive is already waiting on this socket")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if self._items is not None:
            waiter.set_result(None)
        return waiter

    async def get(self) -> Any:
        """The oldest message, waiting for one when none is queued."""
        while self._items is None:
            await self.arrival()
        return self.get_nowait()


class Writable:
    """Whether the transport takes writes; writers wait while it does not.

    Set at first, like uvicorn's Event: the transport's buffer starts empty.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        """Whether writes go through now."""
        return self._set

    def set(self) -> None:
        """Writes go through again: wake every waiting writer."""
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """The transport's buffer is full: writers wait."""
        self._set = False

    async def wait(self) -> bool:
        """Return once writes go through (True, as ``asyncio.Event.wait``)."""
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True
