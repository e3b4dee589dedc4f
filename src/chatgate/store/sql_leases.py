"""Instance leases and the claim of orphaned runs, for the SQL stores.

Each gateway process has a row in ``instances``: its lease, renewed by every
heartbeat (``heartbeat_at``, by the database's clock, so that hosts need not
agree on the time), and what can prove the process gone (``base``, ``host``,
``pid``; see ``chatgate.chat.recovery``). A run is claimed by exactly one
process: the claim is one ``UPDATE ... WHERE status = 'running'``, and of two
processes claiming at once the second finds the rows no longer running.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from sqlalchemy import Table, delete, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.models import RunRecord
from chatgate.protocol import timestamp
from chatgate.store import statements
from chatgate.store.base import InstanceLease
from chatgate.store.schema import TERMINAL_EVENTS, events, instances, runs

T = TypeVar("T")


class SQLLeases:
    """The lease and claim methods of the ``Store`` interface; mixed into ``SQLStore``."""

    locks_rows = True
    """Whether the database locks each row a transaction changes (PostgreSQL).

    A claim then takes its runs' locks in id order. SQLite locks the whole
    database instead, and an ORDER BY there would read the runs in key order:
    every run ever started, rather than the running ones from their index.
    """

    async def register_instance(self, instance: InstanceLease) -> None:
        """Record a starting process and its first heartbeat."""
        values = {
            "instance_id": instance.instance_id,
            "base": instance.base,
            "configured": instance.configured,
            "host": instance.host,
            "pid": instance.pid,
        }
        await self._transact(lambda conn: self._upsert_instance(conn, values))

    async def heartbeat(self, instance_id: str) -> None:
        """Renew the lease of ``instance_id``, by the database's clock."""
        values = {"instance_id": instance_id}
        await self._transact(lambda conn: self._upsert_instance(conn, values))

    async def list_instances(self) -> list[InstanceLease]:
        """Every process with a lease, with how long it has been silent."""
        silent = (self._database_epoch() - instances.c.heartbeat_at).label("silent")
        query = select(
            instances.c.instance_id,
            instances.c.base,
            instances.c.configured,
            instances.c.host,
            instances.c.pid,
            silent,
        ).order_by(instances.c.instance_id)
        return [
            InstanceLease(
                row.instance_id,
                row.base,
                bool(row.configured),
                row.host,
                row.pid,
                float(row.silent),
            )
            for row in await self._read(query)
        ]

    async def release_instance(self, instance_id: str) -> None:
        """Drop the lease of a process that stopped in order."""
        statement = delete(instances).where(instances.c.instance_id == instance_id)
        await self._transact(lambda conn: conn.execute(statement))

    async def claim_orphaned_runs(
        self, dead: Collection[str], stale_after_s: float | None
    ) -> list[RunRecord]:
        """Mark orphaned runs interrupted and return them; concurrent callers never share one.

        Orphaned: the run's instance is in ``dead``, or (with ``stale_after_s``)
        has renewed no lease for that long. The leases of ``dead`` and the
        expired ones are dropped in the same transaction.
        """
        reasons: list[ColumnElement[bool]] = []
        expired: list[ColumnElement[bool]] = []
        if dead:
            reasons.append(runs.c.instance_id.in_(list(dead)))
            expired.append(instances.c.instance_id.in_(list(dead)))
        if stale_after_s is not None:
            deadline = self._database_epoch() - stale_after_s
            alive = select(instances.c.instance_id).where(instances.c.heartbeat_at >= deadline)
            reasons.append(runs.c.instance_id.not_in(alive))
            expired.append(instances.c.heartbeat_at < deadline)
        if not reasons:
            return []
        # Locked in id order, as the group commit's batches lock the runs they
        # end, so that a claim and a batch cannot deadlock.
        orphaned = select(runs.c.run_id).where(statements.IS_RUNNING, or_(*reasons))
        if self.locks_rows:
            orphaned = orphaned.order_by(runs.c.run_id).with_for_update(key_share=True)
        claim = (
            update(runs)
            .where(statements.IS_RUNNING, runs.c.run_id.in_(orphaned.scalar_subquery()))
            .values(status="interrupted", finished_at=timestamp())
            .returning(runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id)
        )
        forget = delete(instances).where(or_(*expired))
        return await self._transact(lambda conn: _claim(conn, claim, forget))

    # Provided by SQLStore and the database's subclass.

    def _database_epoch(self) -> ColumnElement[float]:
        raise NotImplementedError

    def _upsert_instance(self, conn: Connection, values: Mapping[str, Any]) -> None:
        """Insert the row of ``values["instance_id"]``, or update it: with the heartbeat now."""
        row = {**values, "heartbeat_at": self._database_epoch()}
        statement = self._dialect_insert(instances).values(row)
        changed = {name: value for name, value in row.items() if name != "instance_id"}
        conn.execute(
            statement.on_conflict_do_update(index_elements=[instances.c.instance_id], set_=changed)
        )

    @staticmethod
    def _dialect_insert(table: Table) -> Any:
        """The database's INSERT, the one with ``on_conflict_do_update``."""
        raise NotImplementedError

    async def _read(
        self, query: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Row[Any]]:
        raise NotImplementedError

    async def _transact(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError


def _claim(conn: Connection, claim: Executable, forget: Executable) -> list[RunRecord]:
    """Run the claim; tell each claimed run whether its log already holds its final event."""
    claimed = conn.execute(claim).all()
    conn.execute(forget)
    ended: set[str] = set()
    if claimed:
        query = select(events.c.run_id).where(
            events.c.thread_id.in_({row.thread_id for row in claimed}),
            events.c.run_id.in_([row.run_id for row in claimed]),
            events.c.type.in_(TERMINAL_EVENTS),
        )
        ended = {row.run_id for row in conn.execute(query)}
    return [
        RunRecord(run_id, thread_id, owner, instance, "interrupted", run_id in ended)
        for run_id, thread_id, owner, instance in claimed
    ]
