"""Two gateway processes sharing one Redis and one PostgreSQL, as on Cloud Run or Kubernetes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from chatgate.auth.minting import mint_token
from chatgate.closecodes import CloseCode

from databases import postgres_schema
from processes import ServerProcess, server_process
from redis_service import require_redis
from support import (
    DEMO_RUN,
    RECV_TIMEOUT_S,
    SECRET,
    answer_runs,
    assert_answers_assemble,
    assert_resumed,
    established,
    expect_close,
    recv_json,
    recv_until,
    send_json,
)

pytestmark = pytest.mark.integration

RUN_TYPES = DEMO_RUN


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, **extra: str
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Instances A and B on one PostgreSQL schema and one Redis key prefix of their own."""
    redis_url = require_redis()
    async with postgres_schema() as database_url:
        variables = {
            "CHATGATE_JWT_SECRET": SECRET,
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_BROKER_URL": redis_url,
            "CHATGATE_BROKER_KEY_PREFIX": f"t{secrets.token_hex(6)}",
            "CHATGATE_DEMO_DELAY_MS": "150",
            **extra,
        }
        with server_process(tmp_path, **variables) as a, server_process(tmp_path, **variables) as b:
            yield a, b


def socket_to(server: ServerProcess, sub: str) -> Any:
    token = mint_token(SECRET, sub)
    return connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=RECV_TIMEOUT_S,
    )


async def barrier(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the socket received before a pong: what was queued for it has arrived."""
    await send_json(ws, {"type": "ping", "id": "barrier"})
    frames = await recv_until(ws, "pong")
    return frames[:-1]


async def run_frames(ws: ClientConnection, thread_id: str) -> list[dict[str, Any]]:
    frames = await recv_until(ws, "agent_completed", "agent_error")
    return [f for f in frames if f["thread_id"] == thread_id]


async def test_a_run_on_either_instance_reaches_the_users_sockets_on_both_and_no_one_else(
    tmp_path: Path,
) -> None:
    async with (
        two_instances(tmp_path) as (a, b),
        socket_to(a, "alice") as alice_a,
        socket_to(b, "alice") as alice_b,
        socket_to(b, "bob") as bob_b,
    ):
        for ws in (alice_a, alice_b, bob_b):
            await established(ws)
        for origin, other in ((alice_a, alice_b), (alice_b, alice_a)):
            await send_json(
                origin, {"type": "user_message", "id": "m", "payload": {"text": "what is 6*7?"}}
            )
            ack = await recv_json(origin)
            assert ack["type"] == "message_ack"
            thread_id = ack["payload"]["thread_id"]
            sent, seen = [await run_frames(ws, thread_id) for ws in (origin, other)]
            # The same frames reach the socket on the other instance, through Redis.
            assert seen == sent
            assert answer_runs([f["type"] for f in sent]) == answer_runs(RUN_TYPES)
            assert [f["event_id"] for f in sent] == list(range(1, len(sent) + 1))
            assert sent[3]["payload"]["result"] == 42
            assert_answers_assemble(sent)
            assert sent[-1]["payload"]["text"] == "6*7 = 42"
        assert await barrier(bob_b) == []


async def test_resume_on_b_returns_a_run_that_executes_on_a(tmp_path: Path) -> None:
    async with two_instances(tmp_path) as (a, b), socket_to(a, "alice") as watcher:
        await established(watcher)
        async with socket_to(a, "alice") as on_a:
            await established(on_a)
            await send_json(
                on_a, {"type": "user_message", "id": "m", "payload": {"text": "what is 2+3?"}}
            )
            ack = await recv_json(on_a)
            started = await recv_json(on_a)
            assert started["type"] == "agent_started"
        thread_id = ack["payload"]["thread_id"]
        async with socket_to(b, "alice") as on_b:
            await established(on_b)
            await send_json(on_b, {"type": "resume", "thread_id": thread_id, "after_event_id": 1})
            frames = await recv_until(on_b, "resume_complete")
            if not any(f["type"] == "agent_completed" for f in frames):
                # The run is still going on A: its remaining events arrive live.
                frames += await recv_until(on_b, "agent_completed")
            assert await barrier(on_b) == []
        # Another socket on A got the run live: every event, each on its own.
        log = await run_frames(watcher, thread_id)
    assert answer_runs([f["type"] for f in log]) == answer_runs(RUN_TYPES)
    assert log[0] == started
    assert all(f["type"] in {*RUN_TYPES, "resume_complete"} for f in frames), frames
    assert_resumed(frames, log, after=1)
    assert_answers_assemble([started, *frames])
    (completed,) = [f for f in frames if f["type"] == "agent_completed"]
    assert completed["payload"]["text"] == "2+3 = 5"


async def test_cancel_on_b_stops_a_run_executing_on_a(tmp_path: Path) -> None:
    async with (
        two_instances(tmp_path, CHATGATE_DEMO_DELAY_MS="1000") as (a, b),
        socket_to(a, "alice") as on_a,
        socket_to(b, "alice") as on_b,
    ):
        await established(on_a)
        await established(on_b)
        await send_json(
            on_a, {"type": "user_message", "id": "m", "payload": {"text": "what is 6*7?"}}
        )
        ack = await recv_json(on_a)
        run_id = ack["payload"]["run_id"]
        await recv_until(on_b, "agent_started")
        await send_json(on_b, {"type": "cancel", "id": "c", "run_id": run_id})
        for ws in (on_a, on_b):
            final = (await recv_until(ws, "agent_completed", "agent_error"))[-1]
            assert final["type"] == "agent_completed"
            assert final["payload"]["status"] == "cancelled"
            assert final["run_id"] == run_id


async def test_cancel_of_another_users_run_on_another_instance_is_run_not_found(
    tmp_path: Path,
) -> None:
    async with (
        two_instances(tmp_path, CHATGATE_DEMO_DELAY_MS="500") as (a, b),
        socket_to(a, "alice") as alice,
        socket_to(b, "mallory") as mallory,
    ):
        await established(alice)
        await established(mallory)
        await send_json(
            alice, {"type": "user_message", "id": "m", "payload": {"text": "what is 6*7?"}}
        )
        run_id = (await recv_json(alice))["payload"]["run_id"]
        await send_json(mallory, {"type": "cancel", "id": "c", "run_id": run_id})
        error = await recv_json(mallory)
        assert error["payload"]["code"] == "run_not_found"
        final = (await recv_until(alice, "agent_completed"))[-1]
        assert final["payload"]["status"] == "completed"


async def test_the_connection_limit_counts_both_instances(tmp_path: Path) -> None:
    async with (
        two_instances(tmp_path, CHATGATE_MAX_CONNECTIONS_PER_USER="2") as (a, b),
        socket_to(a, "alice") as first,
        socket_to(b, "alice") as second,
    ):
        await established(first)
        await established(second)
        for server in (a, b):
            async with socket_to(server, "alice") as third:
                await expect_close(third, CloseCode.CONNECTION_LIMIT)
        async with socket_to(b, "bob") as other_user:
            await established(other_user)


async def test_a_killed_instance_stops_counting_within_the_presence_ttl(tmp_path: Path) -> None:
    extra = {"CHATGATE_MAX_CONNECTIONS_PER_USER": "1", "CHATGATE_PRESENCE_TTL_S": "1.5"}
    async with two_instances(tmp_path, **extra) as (a, b):
        held = socket_to(a, "alice")
        ws = await held.__aenter__()
        await established(ws)
        async with socket_to(b, "alice") as refused:
            await expect_close(refused, CloseCode.CONNECTION_LIMIT)
        a.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.process.wait, 10)
        with contextlib.suppress(Exception):
            await held.__aexit__(None, None, None)
        # The dead instance renews nothing: its socket stops counting within the TTL.
        deadline = time.monotonic() + 10
        accepted = False
        while not accepted and time.monotonic() < deadline:
            async with socket_to(b, "alice") as retry:
                frame = None
                with contextlib.suppress(Exception):
                    frame = await recv_json(retry)
                accepted = frame is not None and frame["type"] == "connection_established"
            if not accepted:
                await asyncio.sleep(0.25)
        assert accepted
