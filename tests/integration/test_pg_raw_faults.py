"""The PostgreSQL store's asyncpg path when the server goes away, and its kept connections."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.errors import StoreUnavailable
from chatgate.store.postgres import PostgresStore

from databases import postgres_schema
from faults import TcpProxy

pytestmark = pytest.mark.integration


async def test_a_lost_server_is_store_unavailable_naming_no_address_then_the_store_recovers() -> (
    None
):
    async with postgres_schema() as url:
        proxy = TcpProxy(("127.0.0.1", 5432))
        await proxy.start()
        store = PostgresStore(url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        try:
            await store.start()
            thread = await store.create_thread("alice", "t")
            await proxy.cut()
            for call in (
                store.get_thread("alice", thread.id),
                store.recent_turns(thread.id, 5),
                store.append_event(thread.id, None, "agent_started", {}),
                store.add_message(thread.id, "user", "hi", None),
            ):
                with pytest.raises(StoreUnavailable) as lost:
                    await call
                assert str(lost.value).startswith(
                    f"postgresql store at 127.0.0.1:{proxy.port}/test unavailable: "
                )
            await proxy.start()
            event = await store.append_event(thread.id, None, "agent_started", {"n": 1})
            assert event.event_id == 1
            assert [e.payload for e in await store.events_after(thread.id, 0, 10)] == [{"n": 1}]
        finally:
            await store.close()
            await proxy.close()


async def test_a_reader_cancelled_mid_query_leaves_a_usable_connection() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.start()
        try:
            thread = await store.create_thread("alice", "t")
            reads = [asyncio.create_task(store.get_thread("alice", thread.id)) for _ in range(30)]
            await asyncio.sleep(0)
            for task in reads[::2]:
                task.cancel()
            done = await asyncio.gather(*reads, return_exceptions=True)
            kept = [r for r in done if not isinstance(r, asyncio.CancelledError)]
            assert kept
            assert all(r == thread for r in kept)
            for _ in range(40):
                assert await store.get_thread("alice", thread.id) == thread
        finally:
            await store.close()


async def test_reads_after_close_are_store_unavailable() -> None:
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.start()
        await store.close()
        with pytest.raises(StoreUnavailable, match="unavailable: closed"):
            await store.get_thread("alice", "th_1")


@pytest.mark.parametrize(
    ("cache", "named"), [("", True), ("&prepared_statement_cache_size=0", False)]
)
async def test_a_turn_runs_without_named_statements_when_the_url_turns_the_cache_off(
    cache: str, named: bool
) -> None:
    # What a transaction pooler (PgBouncer in transaction mode) needs: no
    # statement that outlives its transaction on the server's session.
    async with postgres_schema() as url:
        store = PostgresStore(url + cache)
        await store.start()
        try:
            thread = await store.create_thread("alice", "t")
            await store.add_message(thread.id, "user", "hi", None)
            await store.append_event(thread.id, "run_1", "agent_started", {"n": 1})
            assert [e.payload for e in await store.events_after(thread.id, 0, 10)] == [{"n": 1}]
            found = await store.get_thread("alice", thread.id)
            assert found is not None
            assert found.id == thread.id
            rows = await store._raw.fetch("SELECT count(*) FROM pg_prepared_statements")
            assert (rows[0][0] > 0) is named
        finally:
            await store.close()
