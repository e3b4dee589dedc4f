"""Publishing a thread's events in order, each once the store has committed it.

A run does not wait for each event's commit before producing the next: it
queues the write (:meth:`~chatgate.store.base.Store.queue_event`) and hands the
pending result to the thread's :class:`ThreadPublisher`, which awaits the
results in the order they were queued and publishes each committed event. So a
turn's events share a few commits instead of one commit each, and still no
client sees an event the store does not hold. One publisher serves all runs of
a thread, so that its events go out in ``event_id`` order.

A store that writes in this process hands back writes already done: when
nothing of the thread waits before such a write, the run publishes it itself,
with no publisher, task or wait (see ``RunManager.emit``). A publisher made
while such a publish is under way starts ``held`` and drains once released, so
that the thread's events still go out in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_QUEUED = 256
"""Writes one run may have queued and not yet committed; past it the run waits."""


class Queuing(Protocol):
    """What a publisher needs of a run: where its failure goes, and its pending count."""

    failure: BaseException | None
    queued: int
    settled: asyncio.Event | None


Publish = Callable[[Any, Any], Awaitable[None]]
"""Publishes one committed event of a run: ``publish(run, stored_event)``."""


@dataclass(slots=True)
class _Item:
    run: Queuing
    result: Awaitable[Any]
    publish: bool


@dataclass(slots=True)
class ThreadPublisher:
    """Awaits a thread's queued writes in order and publishes the events among them."""

    thread_id: str
    publish: Publish
    on_idle: Callable[[ThreadPublisher], None]
    held: bool = False
    """Set while an earlier event of the thread is being published elsewhere."""
    _items: deque[_Item] = field(default_factory=deque)
    _task: asyncio.Task[None] | None = None

    def push(self, run: Queuing, result: Awaitable[Any], *, publish: bool) -> None:
        """Take a queued write of ``run``; publish it once committed when ``publish``."""
        if self._items and self._items[-1].result is result:
            # The store folded this write into the one queued before it (deltas
            # of one answer): one event, published once.
            return
        run.queued += 1
        self._items.append(_Item(run, result, publish))
        if self._task is None and not self.held:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def release(self) -> None:
        """Start publishing what was pushed while held."""
        self.held = False
        if self._task is None and self._items:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._items:
                item = self._items[0]
                try:
                    await self._settle(item)
                finally:
                    self._items.popleft()
                    _done(item.run)
        finally:
            self._task = None
            if not self._items:
                self.on_idle(self)

    async def _settle(self, item: _Item) -> None:
        run = item.run
        try:
            stored = await item.result
        except Exception as exc:  # noqa: BLE001 - handed to the run, which raises it
            if run.failure is None:
                run.failure = exc
            return
        # After a failed write nothing more of the run goes out: the client
        # would otherwise see an event past a hole.
        if item.publish and run.failure is None:
            await self.publish(run, stored)


def _done(run: Queuing) -> None:
    run.queued -= 1
    if run.queued == 0 and run.settled is not None:
        run.settled.set()


async def settled(run: Queuing) -> None:
    """Wait until every write ``run`` queued is committed (or failed)."""
    while run.queued:
        if run.settled is None:
            run.settled = asyncio.Event()
        run.settled.clear()
        await run.settled.wait()
