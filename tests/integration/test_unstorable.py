"""What no store can keep never reaches one, and a write a store refuses still ends its run.

PostgreSQL's text columns cannot hold NUL, and no store can encode a lone
surrogate: an agent's answer holding either is refused as a broken agent, on
every store alike, before anything of it is stored. A write the database
refuses all the same (here a trigger refuses it, as a constraint would) ends
the run with ``agent_error`` ``internal_error`` and a correlation id.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from chatgate.store.base import open_store

from databases import PG_URL, database_url
from support import chat, established, running_server

pytestmark = pytest.mark.integration

_STORES = ["memory", "sqlite", "postgresql"]


@pytest.mark.parametrize("store", _STORES)
@pytest.mark.parametrize(("agent", "events"), [("Nul", []), ("Unencodable", ["agent_thinking"])])
async def test_an_answer_no_store_can_keep_is_an_agent_failure_on_every_store(
    store: str, agent: str, events: list[str], tmp_path: Path
) -> None:
    async with (
        database_url(store, tmp_path) as url,
        running_server(agent=f"agents_for_tests:{agent}", database_url=url) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        frames = await chat(ws, "anything")
        assert [f["type"] for f in frames] == [
            "message_ack",
            "agent_started",
            *events,
            "agent_error",
        ]
        error = frames[-1]["payload"]
        assert error["code"] == "agent_failed"
        assert error["correlation_id"]
        thread_id = frames[-1]["thread_id"]
        # The history holds the user's message only: no answer was stored.
        messages = await server.booted.gateway.store.list_messages(thread_id)
        assert [m.role for m in messages] == ["user"]
        again = await chat(ws, "once more", thread_id=thread_id)
        assert again[-1]["type"] == "agent_error"
        assert ws.close_code is None


async def _refuse_thinking(store: str, url: str) -> None:
    """Make the database refuse every ``agent_thinking`` event, as a violated constraint would."""
    if store == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'agent_thinking'"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        return
    schema = url.rsplit("search_path=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW"
            " WHEN (NEW.type = 'agent_thinking') EXECUTE FUNCTION refuse()"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_a_write_the_database_refuses_ends_the_run_with_an_internal_error(
    store: str, tmp_path: Path
) -> None:
    async with database_url(store, tmp_path) as url:
        settings: dict[str, Any] = {"database_url": url, "demo_delay_ms": 200}
        migrated = open_store(url)
        await migrated.start()
        await migrated.close()
        await _refuse_thinking(store, url)
        with capture_logs() as logs:
            async with (
                running_server(**settings) as server,
                server.connect(server.token("alice")) as ws,
            ):
                await established(ws)
                frames = await chat(ws, "what is 6*7?")
                # The thinking event was refused (never stored, never sent); the run ends at once.
                assert [f["type"] for f in frames] == [
                    "message_ack",
                    "agent_started",
                    "agent_error",
                ]
                error = frames[-1]["payload"]
                assert error["code"] == "internal_error"
                assert "refused by the test" not in error["message"]
                cid = error["correlation_id"]
                run_id = frames[-1]["run_id"]
                assert frames[-1]["event_id"] == 2
                run = await server.booted.gateway.store.get_run("alice", run_id)
                assert run is not None
                assert run.status == "failed"
                assert ws.close_code is None
    said = [entry for entry in logs if entry.get("correlation_id") == cid]
    assert [entry["event"] for entry in said] == ["run failed: the store refused a write"]
    assert said[0]["log_level"] == "error"
