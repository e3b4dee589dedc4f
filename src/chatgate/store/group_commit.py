"""Group commit: many writers' items reach the database in one transaction.

Each caller submits one item and awaits its result. One flusher task at a
time hands every pending item to ``write`` in one call, which the stores run as
one transaction; then each caller gets its own result. A write costs about the
same for one item as for a hundred, so concurrent writers share commits.

When to write: when the flusher is idle, at once (after one turn of the event
loop, so that writers woken by the previous commit join in). Items arriving
during a write form the next batch, which waits until it is ``max_items`` long
or its oldest item has waited ``linger_s``, whichever comes first; a batch never
holds more than ``max_items``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

Writer = Callable[[list[In]], Awaitable[Sequence[Out | Exception]]]
"""Writes a batch in one transaction; returns one result, or the error of that item, per item."""

Merger = Callable[[In, In], bool]
"""Folds a new item into the last pending one when it can (True): both then share one result."""

Observer = Callable[[float, int], None]
"""Told each write's duration in seconds and how many items it held (metrics)."""


_GATHER_TURNS = 4
"""Most extra turns of the event loop a batch waits while writes keep coming."""


class GroupCommitClosed(Exception):
    """An item was submitted after :meth:`GroupCommit.close`."""


class GroupCommit(Generic[In, Out]):
    """Batches concurrent submissions into single calls of ``write``."""

    def __init__(
        self,
        write: Writer[In, Out],
        *,
        linger_s: float,
        max_items: int,
        merge: Merger[In] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._write = write
        self._merge = merge
        self._linger_s = max(linger_s, 0.0)
        self._max_items = max_items
        self._pending: deque[tuple[In, asyncio.Future[Out], float]] = deque()
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.observer: Observer | None = None

    @property
    def pending(self) -> int:
        """How many items wait for a write."""
        return len(self._pending)

    async def submit(self, item: In) -> Out:
        """Queue ``item`` and return its result once the batch holding it is committed.

        Raises:
            GroupCommitClosed: the batcher was closed.
            Exception: whatever ``write`` raised for this item's batch, or returned for it.
        """
        return await self.enqueue(item)

    def enqueue(self, item: In) -> asyncio.Future[Out]:
        """Queue ``item`` now; the future gets its result once the batch holding it is committed.

        Items are written, and their futures resolved, in the order they were queued.
        An item that ``merge`` folds into the last pending one gets that one's
        future: the same object, which tells its caller.

        Raises:
            GroupCommitClosed: the batcher was closed.
        """
        if self._closed:
            raise GroupCommitClosed
        if self._merge is not None and self._pending:
            last, last_future, _ = self._pending[-1]
            # Pending items are not being written yet: the last one may still grow.
            if not last_future.done() and self._merge(last, item):
                return last_future
        # While a flusher runs, its loop is the running one: asking for it
        # again costs a getpid() system call per item on Python 3.11.
        flusher = self._flusher
        loop = asyncio.get_running_loop() if flusher is None else flusher.get_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._pending.append((item, future, loop.time()))
        if len(self._pending) >= self._max_items:
            self._full.set()
        if flusher is None:
            self._flusher = loop.create_task(self._flush_all(), name="group-commit")
        return future

    async def close(self) -> None:
        """Refuse new items and return once every pending item is written."""
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush_all(self) -> None:
        try:
            await self._gather()
            while self._pending:
                await self._write_batch(self._take())
                if self._pending:
                    await self._linger()
        finally:
            self._flusher = None

    async def _gather(self) -> None:
        # A turn of the loop lets writers that are already runnable join this
        # batch; while each turn brings more, a few more turns are worth their
        # wait: a commit costs about the same for one write as for many.
        await asyncio.sleep(0)
        for _ in range(_GATHER_TURNS):
            queued = len(self._pending)
            if queued >= self._max_items:
                return
            await asyncio.sleep(0)
            if len(self._pending) == queued:
                return

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._pending[0][2] + self._linger_s - loop.time()
        if delay <= 0 or len(self._pending) >= self._max_items or self._closed:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._full.wait()

    def _take(self) -> list[tuple[In, asyncio.Future[Out]]]:
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        while self._pending and len(batch) < self._max_items:
            item, future, _ = self._pending.popleft()
            # A caller that gave up before the write began does not want it done.
            if not future.done():
                batch.append((item, future))
        return batch

    async def _write_batch(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = await self._write([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - not swallowed: every caller of the batch gets it
            self._observe(started, len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._observe(started, len(batch))
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _observe(self, started: float, items: int) -> None:
        observer = self.observer
        if observer is not None:
            observer(time.perf_counter() - started, items)
