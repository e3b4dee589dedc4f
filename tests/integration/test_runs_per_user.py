"""CHATGATE_MAX_RUNS_PER_USER: runs in flight per user, across sockets and instances.

docs/protocol.md section 6: past the limit a ``user_message`` gets ``error
rate_limited``, and the socket stays open.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import pytest

from databases import postgres_schema
from redis_service import require_redis
from support import established, recv_json, recv_until, running_server, send_json

SLOW = {"type": "user_message", "id": "slow", "payload": {"text": "slow 400"}}


async def start_slow(ws: Any) -> dict[str, Any]:
    await send_json(ws, SLOW)
    # The user's other runs stream to this socket too: skip their events.
    return (await recv_until(ws, "message_ack"))[-1]


async def refused(ws: Any) -> dict[str, Any]:
    await send_json(ws, {**SLOW, "id": "over"})
    frame = await recv_json(ws)
    while frame["type"] not in {"error", "message_ack"}:
        frame = await recv_json(ws)
    return frame


async def test_the_limit_counts_every_socket_of_the_user_and_no_one_else() -> None:
    async with (
        running_server(agent="agents_for_tests:Streamer", max_runs_per_user=2) as server,
        server.connect(server.token("alice")) as one,
        server.connect(server.token("alice")) as two,
        server.connect(server.token("bob")) as bob,
    ):
        for ws in (one, two, bob):
            await established(ws)
        first = await start_slow(one)
        await start_slow(two)
        over = await refused(two)
        assert (over["type"], over["payload"]["code"], over["payload"]["id"]) == (
            "error",
            "rate_limited",
            "over",
        )
        assert "user" in over["payload"]["message"]
        assert (await refused(bob))["type"] == "message_ack", "another user is not limited"
        await send_json(one, {"type": "cancel", "run_id": first["run_id"]})
        await recv_until(one, "agent_completed")
        assert (await refused(one))["type"] == "message_ack", "a finished run frees its place"


@pytest.mark.integration
async def test_the_limit_holds_across_instances_sharing_a_broker() -> None:
    redis_url = require_redis()
    prefix = f"test-{secrets.token_hex(4)}"
    options = {
        "agent": "agents_for_tests:Streamer",
        "max_runs_per_user": 2,
        "broker_url": redis_url,
        "broker_key_prefix": prefix,
    }
    async with postgres_schema() as url, contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_server(database_url=url, **options))
        b = await stack.enter_async_context(running_server(database_url=url, **options))
        on_a = await stack.enter_async_context(a.connect(a.token("alice")))
        on_b = await stack.enter_async_context(b.connect(b.token("alice")))
        await established(on_a)
        await established(on_b)
        await start_slow(on_a)
        await start_slow(on_a)
        over = await refused(on_b)
        assert (over["type"], over["payload"]["code"]) == ("error", "rate_limited")
