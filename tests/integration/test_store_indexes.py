"""The SQL stores' migrations give the hot queries the indexes and the function they rely on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from chatgate.store import statements
from chatgate.store.pg_statements import COUNT_RUNNING
from chatgate.store.postgres import PostgresStore
from chatgate.store.sqlite import SQLiteStore

from databases import PG_URL, postgres_schema

pytestmark = pytest.mark.integration

# The count of a user's runs running elsewhere, as SQLite is asked it.
_SQLITE_COUNT = str(statements.COUNT_RUNNING.compile(dialect=sqlite_dialect(paramstyle="named")))


async def test_sqlite_counts_a_users_running_runs_through_the_partial_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plan.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.start()
    await store.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + _SQLITE_COUNT, {"owner": "alice", "instance": "host:1"}
        ).fetchall()
    assert any("ix_runs_running_owner" in str(row[-1]) for row in plan), plan


async def test_postgresql_counts_a_users_running_runs_through_the_partial_index() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.start()
        await store.close()
        schema = url.rsplit("search_path=", 1)[1]
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            # Enough finished runs that a scan of every running one is not the cheap plan.
            await _fill_runs(conn, running_every=5)
            rows = await conn.fetch("EXPLAIN " + COUNT_RUNNING, ["u7", "u8"], "host:1")
            functions = await conn.fetch(
                "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n"
                " ON n.oid = p.pronamespace WHERE n.nspname = $1",
                schema,
            )
        finally:
            await conn.close()
    plan = "\n".join(row[0] for row in rows)
    assert "ix_runs_running_owner" in plan, plan
    # The batch function lives in the store's own schema, beside its tables.
    assert [row[0] for row in functions] == ["chatgate_write_batch"]


async def test_a_postgresql_batch_finds_its_threads_by_index_however_stale_its_plan() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.start()
        schema = url.rsplit("search_path=", 1)[1]
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            # The writer's connection plans the batch's statements while the tables
            # are empty, and keeps those plans (after five calls, a generic one).
            await _turns(store, "early", 8)
            await conn.execute(
                "INSERT INTO threads (id, owner, title, created_at, updated_at, last_event_id)"
                " SELECT 'th_' || i, 'alice', 't', now(), now(), 1"
                " FROM generate_series(1, 20000) AS i"
            )
            await conn.execute(
                "INSERT INTO messages (id, thread_id, role, content, created_at)"
                " SELECT 'm_' || i, 'th_' || i, 'user', 'x', now()"
                " FROM generate_series(1, 20000) AS i"
            )
            await conn.execute(
                "INSERT INTO events (thread_id, event_id, type, payload, created_at)"
                " SELECT 'th_' || i, 1, 'agent_started', '{}', now()"
                " FROM generate_series(1, 20000) AS i"
            )
            before = await _scans(conn, schema)
            await _turns(store, "late", 8)
            after = await _scans(conn, schema)
        finally:
            await conn.close()
            await store.close()
    assert after.get("threads") == before.get("threads"), (before, after)
    assert after.get("events") == before.get("events"), (before, after)
    assert after.get("messages") == before.get("messages"), (before, after)


async def _fill_runs(conn: asyncpg.Connection, *, running_every: int) -> None:
    """20,000 runs of 500 users on 3 instances, one in ``running_every`` running; analyzed."""
    await conn.execute(
        "INSERT INTO threads (id, owner, title, created_at, updated_at, last_event_id)"
        " VALUES ('t', 'u0', 't', now(), now(), 0)"
    )
    await conn.execute(
        "INSERT INTO runs (run_id, thread_id, owner, instance_id, status, started_at)"
        " SELECT 'r' || i, 't', 'u' || (i % 500), 'host:' || (i % 3),"
        " CASE WHEN i % $1 = 0 THEN 'running' ELSE 'completed' END, now()"
        " FROM generate_series(1, 20000) AS i",
        running_every,
    )
    await conn.execute("ANALYZE runs")


async def _turns(store: PostgresStore, title: str, count: int) -> None:
    """``count`` batches as a chat turn makes them: a new thread, then events in it."""
    for n in range(count):
        thread = await store.create_thread("alice", f"{title} {n}")
        for kind in ("agent_started", "agent_thinking"):
            await store.append_event(thread.id, None, kind, {"n": n})
        await store.add_message(thread.id, "user", "hi", None)
        # The reads of a turn and of a resume, on the readers' kept statements.
        assert await store.get_thread("alice", thread.id) is not None
        assert await store.recent_turns(thread.id, 100) == [("user", "hi")]
        assert len(await store.events_after(thread.id, 0, 100)) == 2
        assert len(await store.list_messages(thread.id, limit=50)) == 1


async def _scans(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    """Sequential scans so far of each table of ``schema``, once the counters are flushed."""
    # A backend reports its counters when idle, at most once a second.
    await asyncio.sleep(1.2)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = await conn.fetch(
        "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE schemaname = $1", schema
    )
    return {row[0]: row[1] for row in rows}


# What a chat turn changes in a row it already wrote: no index may hold these
# columns, or every message and every finished run moves an index entry.
_CHANGED_BY_A_TURN = {"threads": {"updated_at", "last_event_id"}, "runs": {"status", "finished_at"}}


def _sqlite_indexed_columns(path: Path, table: str) -> dict[str, tuple[set[str], bool]]:
    """Each index of ``table``: its columns, and whether it is partial."""
    with sqlite3.connect(path) as conn:
        indexes = conn.execute(f"PRAGMA index_list({table})").fetchall()
        return {
            name: ({row[2] for row in conn.execute(f"PRAGMA index_info({name})")}, bool(partial))
            for _, name, _, _, partial in indexes
        }


async def test_sqlite_indexes_hold_no_column_a_turn_changes(tmp_path: Path) -> None:
    path = tmp_path / "indexes.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.start()
    await store.close()
    for table, changed in _CHANGED_BY_A_TURN.items():
        for name, (columns, partial) in _sqlite_indexed_columns(path, table).items():
            # The partial index of running runs drops a run once, when it ends.
            if not partial:
                assert not columns & changed, (table, name, columns)
    assert _sqlite_indexed_columns(path, "threads")["ix_threads_owner"] == ({"owner"}, False)


async def test_sqlite_lists_threads_and_claims_runs_through_indexes(tmp_path: Path) -> None:
    path = tmp_path / "claims.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.start()
    said: list[tuple[str, object]] = []

    def heard(_c: object, _cur: object, statement: str, params: object, *_: object) -> None:
        said.append((statement, params))

    event.listen(store._writer, "before_cursor_execute", heard)
    try:
        assert await store.claim_orphaned_runs({"host:9"}, None) == []
        assert await store.claim_orphaned_runs(set(), 30.0) == []
    finally:
        event.remove(store._writer, "before_cursor_execute", heard)
        await store.close()
    claims = [(sql, params) for sql, params in said if sql.lstrip().startswith("UPDATE runs")]
    assert len(claims) == 2, said
    listing = str(
        statements.LIST_THREADS.params(owner="alice").compile(
            dialect=sqlite_dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    with sqlite3.connect(path) as conn:
        for sql, params in claims:
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()  # type: ignore[arg-type]
            details = [str(row[-1]) for row in plan]
            # Reading every running run is fine (their index holds no other); every run is not.
            scans = [step for step in details if step.startswith("SCAN runs")]
            assert scans == ["SCAN runs USING INDEX ix_runs_running_owner"], details
        plan = conn.execute("EXPLAIN QUERY PLAN " + listing).fetchall()
    assert "SEARCH threads USING INDEX ix_threads_owner" in str(plan), plan


async def test_postgresql_indexes_hold_no_column_a_turn_changes_and_claims_use_one() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.start()
        schema = url.rsplit("search_path=", 1)[1]
        said: list[tuple[str, object]] = []

        def heard(_c: object, _cur: object, statement: str, params: object, *_: object) -> None:
            said.append((statement, params))

        engine = store._writer.sync_engine
        event.listen(engine, "before_cursor_execute", heard)
        try:
            assert await store.claim_orphaned_runs({"host:9"}, None) == []
        finally:
            event.remove(engine, "before_cursor_execute", heard)
            await store.close()
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            indexes = await conn.fetch(
                "SELECT t.relname, i.relname, a.attname, x.indpred IS NOT NULL"
                " FROM pg_index AS x"
                " JOIN pg_class AS i ON i.oid = x.indexrelid"
                " JOIN pg_class AS t ON t.oid = x.indrelid"
                " JOIN pg_namespace AS n ON n.oid = t.relnamespace"
                " JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey)"
                " WHERE n.nspname = $1",
                schema,
            )
            await _fill_runs(conn, running_every=100)
            claims = [(sql, p) for sql, p in said if sql.lstrip().startswith("UPDATE runs")]
            assert len(claims) == 1, said
            sql, params = claims[0]
            plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, *params))  # type: ignore[misc]
        finally:
            await conn.close()
    for table, _index, column, partial in indexes:
        if not partial:
            assert column not in _CHANGED_BY_A_TURN.get(table, set()), (table, _index, column)
    assert {(t, i, c) for t, i, c, _ in indexes if t == "threads"} >= {
        ("threads", "ix_threads_owner", "owner")
    }
    assert "ix_runs_running_owner" in plan, plan
    assert "Seq Scan on runs" not in plan, plan
