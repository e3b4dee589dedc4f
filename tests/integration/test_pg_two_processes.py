"""Two server processes on one PostgreSQL, writing to one thread at once.

Each process allocates event ids in the database, so the thread's log holds
every event of every run exactly once, numbered 1..N without a gap, and each
run's events in their order; a resume returns that log with each answer's
consecutive deltas merged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_token

from databases import postgres_schema
from processes import ServerProcess, server_process
from support import (
    DEMO_RUN,
    SECRET,
    answer_runs,
    assert_answers_assemble,
    assert_resumed,
    greeting_run,
    recv_json,
    recv_until,
    send_json,
    stored_log,
)

pytestmark = pytest.mark.integration

SOCKETS_PER_PROCESS = 3
RUNS_PER_SOCKET = 4
RUN_EVENTS = DEMO_RUN


def socket_to(server: ServerProcess, token: str) -> Any:
    return connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["chatgate.v1"],
        open_timeout=10,
    )


async def run_many(server: ServerProcess, token: str, thread_id: str, tag: str) -> set[str]:
    """Start several runs on the thread from one socket; return their ids once all ended."""
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        for i in range(RUNS_PER_SOCKET):
            frame = {
                "type": "user_message",
                "id": f"{tag}-{i}",
                "thread_id": thread_id,
                "payload": {"text": f"what is {i}*7?"},
            }
            await send_json(ws, frame)
        mine: set[str] = set()
        ended: set[str] = set()
        # Live events of the other sockets' runs on this process arrive here too.
        while len(mine) < RUNS_PER_SOCKET or not mine <= ended:
            frame = await recv_json(ws)
            if frame["type"] == "message_ack":
                mine.add(frame["run_id"])
            elif frame["type"] in {"agent_completed", "agent_error"}:
                ended.add(frame["run_id"])
        return mine


async def read_log(server: ServerProcess, token: str, thread_id: str) -> list[dict[str, Any]]:
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(ws, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
        frames = await recv_until(ws, "resume_complete")
    return frames[:-1]


async def test_two_processes_number_one_thread_without_gaps(tmp_path: Path) -> None:
    token = mint_token(SECRET, "alice")
    async with postgres_schema() as url:
        # 24 runs of one user at once: above the default runs-per-user limit.
        variables = {
            "CHATGATE_DATABASE_URL": url,
            "CHATGATE_JWT_SECRET": SECRET,
            "CHATGATE_MAX_RUNS_PER_USER": "100",
        }
        with (
            server_process(tmp_path, **variables) as one,
            server_process(tmp_path, **variables) as two,
        ):
            async with socket_to(one, token) as ws:
                assert (await recv_json(ws))["type"] == "connection_established"
                await send_json(ws, {"type": "user_message", "id": "0", "payload": {"text": "hi"}})
                first = await recv_until(ws, "agent_completed")
            thread_id = first[0]["thread_id"]

            writers = [
                run_many(server, token, thread_id, f"{name}{n}")
                for name, server in (("one", one), ("two", two))
                for n in range(SOCKETS_PER_PROCESS)
            ]
            runs = await asyncio.gather(*writers)
            resumed = await read_log(two, token, thread_id)
        log = await stored_log(url, thread_id)

    runs_total = 2 * SOCKETS_PER_PROCESS * RUNS_PER_SOCKET
    greeting = first[1:]
    greeting_types = [f["type"] for f in greeting]
    assert answer_runs(greeting_types) == answer_runs(greeting_run(greeting[-1]["payload"]["text"]))
    assert [e["event_id"] for e in log] == list(range(1, len(log) + 1))
    assert log[: len(greeting)] == greeting
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in log:
        by_run.setdefault(event["run_id"], []).append(event)
    started = set().union(*runs)
    assert len(started) == runs_total
    assert set(by_run) == started | {first[0]["run_id"]}
    for run_id in started:
        assert answer_runs([e["type"] for e in by_run[run_id]]) == answer_runs(RUN_EVENTS), run_id
    assert_answers_assemble(log)
    # What a socket that had nothing reads back: the same log, deltas merged.
    assert_resumed(resumed, log)
    assert sum(f["type"] == "agent_completed" for f in resumed) == runs_total + 1
