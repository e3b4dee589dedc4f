"""An in-process store: nothing survives the process. For tests and quick starts.

Queued writes are done at once, in the order they are queued, and handed back
as futures that already hold their outcome: a run publishes such an event
without waiting for a commit (see ``chatgate.chat.publisher``).

It is bounded, so that a long-running process does not grow without end. It
keeps at most ``StoreOptions.memory_threads`` threads (``CHATGATE_MEMORY_THREADS``):
past that, the thread touched longest ago is forgotten with its messages, events
and finished runs. It keeps at most ``memory_events`` events and
``memory_messages`` messages in all: past either, the oldest ones of the threads
touched longest ago are dropped, a tenth of the bound at a time (so that the
cost is spread over many writes). A thread's event ids go on from where they
were: ``events_after`` starts at the oldest one kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any, Generic, TypeVar

import orjson

from chatgate.models import Message, Role, RunRecord, RunStatus, StoredEvent, Thread, new_id
from chatgate.protocol import timestamp
from chatgate.store.base import InstanceLease, StoreOptions

_TERMINAL_EVENTS = frozenset({"agent_completed", "agent_error"})
T = TypeVar("T")
R = TypeVar("R")


class _Log(Generic[R]):
    """A thread's latest records, and how many older ones were dropped."""

    __slots__ = ("dropped", "items")

    def __init__(self) -> None:
        self.items: list[R] = []
        self.dropped = 0


class _Bounded(Generic[R]):
    """Each thread's records, at most ``bound`` in all.

    Past the bound, the oldest records of the threads touched longest ago go
    first, down to nine tenths of the bound: the cost is spread over many writes.
    """

    __slots__ = ("_bound", "_count", "_logs", "_touched")

    def __init__(self, bound: int, touched: Iterable[str]) -> None:
        self._bound = bound
        self._touched = touched
        """The thread ids, touched longest ago first (the store's live view)."""
        self._count = 0
        self._logs: dict[str, _Log[R]] = defaultdict(_Log)

    def log(self, thread_id: str) -> _Log[R] | None:
        """The thread's log, when it has one."""
        return self._logs.get(thread_id)

    def items(self, thread_id: str) -> list[R]:
        """The thread's records kept, oldest first."""
        log = self._logs.get(thread_id)
        return [] if log is None else log.items

    def append(self, thread_id: str, record: R) -> None:
        """Keep ``record``, last of its thread; drop the oldest records past the bound."""
        self._logs[thread_id].items.append(record)
        self._count += 1
        if self._count > self._bound:
            self._trim(self._count - self._bound + self._bound // 10)

    def next_number(self, thread_id: str) -> int:
        """The number of the thread's next record (counting the dropped ones)."""
        log = self._logs.get(thread_id)
        return 1 if log is None else log.dropped + len(log.items) + 1

    def forget(self, thread_id: str) -> None:
        """Drop the thread's records."""
        log = self._logs.pop(thread_id, None)
        if log is not None:
            self._count -= len(log.items)

    def _trim(self, excess: int) -> None:
        for thread_id in self._touched:
            log = self._logs.get(thread_id)
            if log is None or not log.items:
                continue
            n = min(excess, len(log.items))
            del log.items[:n]
            log.dropped += n
            self._count -= n
            excess -= n
            if excess <= 0:
                return


class MemoryStore:
    """Keeps threads, messages, events and runs in dictionaries."""

    kind = "memory"

    def __init__(self, url: str = "memory://", options: StoreOptions | None = None) -> None:
        # Batching means nothing here: every write is immediate.
        options = options or StoreOptions()
        self._max_threads = options.memory_threads
        self.url = url
        # In the order they were last touched: the first is the one to forget.
        # Not a plain dict: its first key is found by walking past the slots
        # that deletions at the front left, thousands once the bound is reached
        # (a chat turn's store work took 14 µs at 10,000 threads, 13 with this);
        # an OrderedDict links its keys.
        self._threads: OrderedDict[str, Thread] = OrderedDict()
        self._thread_runs: dict[str, list[str]] = defaultdict(list)
        self._messages: _Bounded[Message] = _Bounded(options.memory_messages, self._threads)
        self._sequence = itertools.count()
        self._latest_message: dict[str, int] = {}
        self._events: _Bounded[StoredEvent] = _Bounded(options.memory_events, self._threads)
        self._runs: dict[str, RunRecord] = {}
        self._heartbeats: dict[str, float] = {}
        self._instances: dict[str, InstanceLease] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _future(self) -> asyncio.Future[Any]:
        # Before Python 3.12, asyncio.get_running_loop() asks the kernel for the
        # process id at every call (a guard against fork), and a turn writes a
        # dozen times; the loop of the last write serves while it runs.
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop.create_future()

    def _done(self, write: Callable[..., T], *arguments: Any) -> asyncio.Future[T]:
        """Do ``write(*arguments)`` now; a future holds what it returned, or its LookupError."""
        future: asyncio.Future[T] = self._future()
        try:
            future.set_result(write(*arguments))
        except LookupError as error:
            future.set_exception(error)
        return future

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to flush."""

    async def ping(self) -> None:
        """Always answers."""

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``."""
        return self._create_thread(owner, title)

    def queue_thread(self, owner: str, title: str) -> tuple[Thread, asyncio.Future[Thread]]:
        """Create the thread now; the future already holds it."""
        future = self._done(self._create_thread, owner, title)
        return future.result(), future

    def _create_thread(self, owner: str, title: str) -> Thread:
        now = timestamp()
        thread = Thread(new_id("th"), owner, title, now, now)
        self._threads[thread.id] = thread
        if len(self._threads) > self._max_threads:
            self._forget(next(iter(self._threads)))
        return thread

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        thread = self._threads.get(thread_id)
        return thread if thread is not None and thread.owner == owner else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        mine = [t for t in self._threads.values() if t.owner == owner]
        # Threads touched in one millisecond: the one with the latest message
        # first, as the SQL stores order them.
        latest = self._latest_message
        return sorted(mine, key=lambda t: (t.updated_at, latest.get(t.id, -1)), reverse=True)

    async def add_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> Message:
        """Append a message and touch the thread (raises LookupError for an unknown thread)."""
        return self._add_message(thread_id, role, content, run_id, message_id)

    def _add_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None,
    ) -> Message:
        thread = self._thread(thread_id)
        now = timestamp()
        message = Message(message_id or new_id("msg"), thread_id, role, content, run_id, now)
        self._latest_message[thread_id] = next(self._sequence)
        self._threads[thread_id] = Thread(
            thread.id, thread.owner, thread.title, thread.created_at, updated_at=now
        )
        self._threads.move_to_end(thread_id)  # the most recently touched
        # Kept once the thread is the latest touched: past the bound, others lose theirs first.
        self._messages.append(thread_id, message)
        return message

    async def list_messages(
        self, thread_id: str, limit: int | None = None, before: str | None = None
    ) -> list[Message]:
        """Return a thread's messages, oldest first: the last ``limit`` before ``before``."""
        messages = self._messages.items(thread_id)
        end = len(messages)
        if before is not None:
            end = next((i for i, m in enumerate(messages) if m.id == before), 0)
        start = 0 if limit is None else max(0, end - limit)
        return messages[start:end]

    async def recent_turns(self, thread_id: str, limit: int) -> list[tuple[Role, str]]:
        """The role and text of a thread's most recent ``limit`` messages, oldest first."""
        messages = self._messages.items(thread_id)
        return [(m.role, m.content) for m in messages[max(0, len(messages) - limit) :]]

    async def append_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> StoredEvent:
        """Number the event after the thread's last one and keep it.

        Raises:
            LookupError: no thread ``thread_id`` exists.
            TypeError: the payload cannot be encoded as JSON (as a durable store would refuse it).
        """
        return await self.queue_event(thread_id, run_id, kind, payload)

    def queue_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> asyncio.Future[StoredEvent]:
        """Store the event now; the future holds it, or the LookupError of an unknown thread.

        A payload that is not JSON raises TypeError at once. Written out rather
        than through ``_done``: every event of every run comes here.
        """
        orjson.dumps(payload)
        future: asyncio.Future[StoredEvent] = self._future()
        if thread_id not in self._threads:
            future.set_exception(_unknown(thread_id))
            return future
        events = self._events
        event_id = events.next_number(thread_id)
        event = StoredEvent(thread_id, event_id, kind, run_id, payload, timestamp())
        events.append(thread_id, event)
        future.set_result(event)
        return future

    def queue_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> asyncio.Future[Message]:
        """Store the message now."""
        return self._done(self._add_message, thread_id, role, content, run_id, message_id)

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return events after ``after_event_id`` (from the oldest kept); ids are dense: a slice."""
        log = self._events.log(thread_id)
        if log is None:
            return []
        start = max(after_event_id - log.dropped, 0)
        return log.items[start : start + limit]

    async def record_run(self, run: RunRecord) -> None:
        """Remember a running run."""
        self._record_run(run)

    def _record_run(self, run: RunRecord) -> None:
        # Built directly: dataclasses.replace costs ten times as much, twice per turn.
        self._runs[run.run_id] = RunRecord(run.run_id, run.thread_id, run.owner, run.instance_id)
        self._thread_runs[run.thread_id].append(run.run_id)

    def queue_run(self, run: RunRecord) -> asyncio.Future[None]:
        """Remember the run now."""
        return self._done(self._record_run, run)

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it belongs to ``owner``."""
        run = self._runs.get(run_id)
        return run if run is not None and run.owner == owner else None

    async def count_running_runs(self, owner: str, other_than_instance: str) -> int:
        """How many of ``owner``'s runs are running on other instances."""
        return sum(
            1
            for run in self._runs.values()
            if run.owner == owner
            and run.status == "running"
            and run.instance_id != other_than_instance
        )

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Mark a running run as ended."""
        self._end_run(run_id, status)

    def queue_run_end(self, run_id: str, status: RunStatus) -> asyncio.Future[None]:
        """Mark a running run as ended now."""
        return self._done(self._end_run, run_id, status)

    def _end_run(self, run_id: str, status: RunStatus) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.status == "running":
            self._runs[run_id] = RunRecord(
                run.run_id, run.thread_id, run.owner, run.instance_id, status, run.ended
            )

    async def register_instance(self, instance: InstanceLease) -> None:
        """Record a starting process and its first heartbeat."""
        self._instances[instance.instance_id] = instance
        self._heartbeats[instance.instance_id] = time.time()

    async def heartbeat(self, instance_id: str) -> None:
        """Renew the lease of ``instance_id``."""
        self._instances.setdefault(instance_id, InstanceLease(instance_id))
        self._heartbeats[instance_id] = time.time()

    async def list_instances(self) -> list[InstanceLease]:
        """Every process with a lease, with how long it has been silent."""
        now = time.time()
        return [
            dataclasses.replace(lease, silent_s=now - self._heartbeats[lease.instance_id])
            for lease in sorted(self._instances.values(), key=lambda i: i.instance_id)
        ]

    async def release_instance(self, instance_id: str) -> None:
        """Drop the lease of a process that stopped in order."""
        self._instances.pop(instance_id, None)
        self._heartbeats.pop(instance_id, None)

    async def claim_orphaned_runs(
        self, dead: Collection[str], stale_after_s: float | None
    ) -> list[RunRecord]:
        """Mark orphaned runs interrupted, drop the leases of ``dead``, return the runs."""
        claimed = []
        for run in list(self._runs.values()):
            if run.status == "running" and self._orphaned(run, dead, stale_after_s):
                ended = any(
                    e.run_id == run.run_id and e.type in _TERMINAL_EVENTS
                    for e in self._events.items(run.thread_id)
                )
                record = dataclasses.replace(run, status="interrupted", ended=ended)
                self._runs[run.run_id] = record
                claimed.append(record)
        for instance_id in [*dead, *self._expired(stale_after_s)]:
            await self.release_instance(instance_id)
        return claimed

    def _expired(self, stale_after_s: float | None) -> list[str]:
        if stale_after_s is None:
            return []
        deadline = time.time() - stale_after_s
        return [i for i, seen in self._heartbeats.items() if seen < deadline]

    def _orphaned(self, run: RunRecord, dead: Collection[str], stale_after_s: float | None) -> bool:
        if run.instance_id in dead:
            return True
        if stale_after_s is None:
            return False
        seen = self._heartbeats.get(run.instance_id)
        return seen is None or seen < time.time() - stale_after_s

    def _forget(self, thread_id: str) -> None:
        """Drop a thread with its messages, events and finished runs."""
        del self._threads[thread_id]
        self._messages.forget(thread_id)
        self._events.forget(thread_id)
        self._latest_message.pop(thread_id, None)
        for run_id in self._thread_runs.pop(thread_id, ()):
            run = self._runs.get(run_id)
            if run is not None and run.status != "running":
                del self._runs[run_id]

    def _thread(self, thread_id: str) -> Thread:
        thread = self._threads.get(thread_id)
        if thread is None:
            raise _unknown(thread_id)
        return thread


def _unknown(thread_id: str) -> LookupError:
    return LookupError(f"no thread {thread_id!r}")
