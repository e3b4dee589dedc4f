"""The ``Store`` interface: threads, messages, the per-thread event log, and runs.

Backends live in ``chatgate/store/<kind>.py`` and are chosen by the scheme of
``CHATGATE_DATABASE_URL`` in :func:`open_store`: ``memory://`` (nothing
survives the process), ``sqlite:///path`` and ``postgresql://...``. An unknown
scheme is a boot error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chatgate.backends import Backend, load_backend
from chatgate.models import Message, Role, RunRecord, RunStatus, StoredEvent, Thread
from chatgate.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Tuning shared by every backend; a backend ignores what it has no use for."""

    batch_ms: float = 0.0
    """Longest wait of a batch of writes gathered while the previous one was written."""
    batch_max: int = 256
    """Most writes (threads, messages, runs, events) in one transaction."""
    memory_threads: int = 10_000
    """Threads the in-process store keeps; past it, the one touched longest ago goes."""
    memory_events: int = 250_000
    """Events the in-process store keeps in all; past it, the oldest of the threads
    touched longest ago go first."""
    memory_messages: int = 50_000
    """Messages the in-process store keeps in all, dropped as events are."""
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite's durability: NORMAL survives a process crash, FULL a power cut too."""

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreOptions:
        """The options configured by ``settings``."""
        return cls(
            batch_ms=settings.store_batch_ms,
            batch_max=settings.store_batch_max,
            sqlite_synchronous=settings.sqlite_synchronous,
            memory_threads=settings.memory_threads,
            memory_events=settings.memory_events,
            memory_messages=settings.memory_messages,
        )


@dataclass(frozen=True, slots=True)
class InstanceLease:
    """A gateway process as the store knows it: its lease, and what can prove it gone."""

    instance_id: str
    """Unique to the process: ``<base>/<random>``."""
    base: str | None = None
    """``CHATGATE_INSTANCE_ID`` when ``configured``, else ``<hostname>:<port>``."""
    configured: bool = False
    host: str | None = None
    """The host and PID namespace in which ``pid`` names the process."""
    pid: int | None = None
    silent_s: float = 0.0
    """Seconds since its last heartbeat, by the store's clock (when listed)."""


class Store(Protocol):
    """Durable state of chats.

    Every method raises ``StoreUnavailable`` when the backend does not answer.
    """

    kind: str

    async def start(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None:
        """Write what is pending, then disconnect."""

    async def ping(self) -> None:
        """Return when the backend answers; raise ``StoreUnavailable`` otherwise."""

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``."""

    def queue_thread(self, owner: str, title: str) -> tuple[Thread, Awaitable[object]]:
        """Queue a new thread of ``owner`` now: the thread, and its write to await once.

        Writes queued after it may name the thread: they are committed with it
        or after it, so a new thread's first message costs no commit of its own.
        """

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it exists and belongs to ``owner``, else None."""

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""

    async def add_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> Message:
        """Append a message to a thread; returns once it is stored (committed).

        ``message_id`` is the id to give it (a run's answer has its id before it
        is stored: the deltas carry it); a new one when None.
        """

    async def list_messages(
        self, thread_id: str, limit: int | None = None, before: str | None = None
    ) -> list[Message]:
        """Return a thread's messages, oldest first.

        With ``limit``, only the most recent ``limit`` of them; with ``before``,
        only those older than that message (an unknown id gives none).
        """

    async def recent_turns(self, thread_id: str, limit: int) -> list[tuple[Role, str]]:
        """The role and text of a thread's most recent ``limit`` messages, oldest first.

        What a run's agent gets as its history: cheaper than :meth:`list_messages`.
        """

    async def append_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> StoredEvent:
        """Give the event the thread's next ``event_id`` and store it; returns after the commit.

        Raises:
            LookupError: no thread ``thread_id`` exists.
        """

    def queue_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> Awaitable[StoredEvent]:
        """Queue the event now, in order with every other queued write; await it once.

        Writes queued one after the other are committed in that order (often in
        one transaction), so a run need not wait for each event's commit before
        producing the next. Awaiting gives the stored event once it is committed,
        or raises as :meth:`append_event` does; a payload that is not JSON raises
        ``TypeError`` at once.
        """

    def queue_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> Awaitable[Message]:
        """Queue a message now, in order with every other queued write; await it once."""

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events with ``event_id > after_event_id``, in order."""

    async def record_run(self, run: RunRecord) -> None:
        """Remember a run that starts now, as ``running`` on ``run.instance_id``."""

    def queue_run(self, run: RunRecord) -> Awaitable[object]:
        """Queue the record of a run that starts now, in order with every other queued write."""

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it exists and belongs to ``owner``, else None."""

    async def count_running_runs(self, owner: str, other_than_instance: str) -> int:
        """How many of ``owner``'s runs are running on instances other than the one named."""

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Mark a running run as ended with ``status``; a run no longer running is left alone."""

    def queue_run_end(self, run_id: str, status: RunStatus) -> Awaitable[object]:
        """Queue :meth:`finish_run` now, in order with every other queued write; await it once.

        Queued right after the run's final event, it usually shares its commit.
        """

    async def register_instance(self, instance: InstanceLease) -> None:
        """Record a starting process and its first heartbeat (its lease)."""

    async def heartbeat(self, instance_id: str) -> None:
        """Renew the lease of ``instance_id``: record that it is alive now."""

    async def list_instances(self) -> list[InstanceLease]:
        """Every process with a lease, each with how long it has been silent."""

    async def release_instance(self, instance_id: str) -> None:
        """Forget a process that stopped in order (its runs have ended)."""

    async def claim_orphaned_runs(
        self, dead: Collection[str], stale_after_s: float | None
    ) -> list[RunRecord]:
        """Mark orphaned runs ``interrupted`` and return them, each to exactly one caller.

        A running run is orphaned when its instance is in ``dead`` (proven gone,
        see ``chatgate.chat.recovery``) or, when ``stale_after_s`` is given, when
        its instance has renewed no lease for that long. The leases of the
        instances in ``dead`` are dropped. ``RunRecord.ended`` tells whether
        the run's log already holds its final event.
        """


_BACKENDS = {
    "memory": Backend("chatgate.store.memory:MemoryStore"),
    "sqlite": Backend("chatgate.store.sqlite:SQLiteStore"),
    "postgresql": Backend("chatgate.store.postgres:PostgresStore", extra="postgres"),
    "postgres": Backend("chatgate.store.postgres:PostgresStore", extra="postgres"),
}


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Return the store for ``url``'s scheme (not yet started).

    Raises:
        ConfigError: the scheme names no known backend, or the URL is unusable.
    """
    scheme = url.partition("://")[0].partition("+")[0].lower()
    factory: Any = load_backend("CHATGATE_DATABASE_URL", scheme, _BACKENDS)
    store: Store = factory(url, options or StoreOptions())
    return store
