"""A Redis outage seen from outside: a real ``chatgate serve`` whose own Redis stops mid-run.

The test starts a password-protected redis-server of its own on a free port, kills it
while a run streams, checks what clients and the load balancer see, starts it again
on the same port, and checks that the gateway recovers by itself and that the run,
which went on during the outage, can be read back whole.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from chatgate.auth.minting import mint_token
from chatgate.closecodes import CloseCode

from processes import ServerProcess, server_process
from redis_service import PASSWORD, RedisServer, own_redis_server
from support import (
    DEMO_RUN,
    RECV_TIMEOUT_S,
    SECRET,
    answer_runs,
    answer_text,
    assert_answers_assemble,
    assert_resumed,
    established,
    expect_close,
    greeting_run,
    recv_json,
    recv_until,
    send_json,
    stored_log,
)

pytestmark = pytest.mark.integration

RUN_TYPES = DEMO_RUN
POLL_S = 20.0
"""Bound of every poll below; the broker's reconnection backoff is capped at 5 s."""
DELAY_MS = "600"
"""The demo agent's pause between steps: the arithmetic run takes about 1.8 s."""


def socket_to(server: ServerProcess, sub: str = "alice") -> Any:
    token = mint_token(SECRET, sub)
    return connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=RECV_TIMEOUT_S,
    )


async def poll(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Call ``check`` until it returns something true, and return that; bounded.

    A child process and a redis-server offer nothing to await, hence the polling.
    """
    try:
        async with asyncio.timeout(POLL_S):
            while True:
                result = await check()
                if result:
                    return result
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"{what} did not happen within {POLL_S:g}s")


def readiness(http: httpx.AsyncClient, status: int) -> Callable[[], Awaitable[Any]]:
    async def check() -> dict[str, Any] | None:
        response = await http.get("/readyz")
        return response.json() if response.status_code == status else None

    return check


async def barrier(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the socket received before the answer to a ping sent now."""
    await send_json(ws, {"type": "ping", "id": "barrier"})
    frames = await recv_until(ws, "pong")
    return frames[:-1]


def assert_events_of_run(frames: list[dict[str, Any]], thread_id: str, run_id: str) -> None:
    """Only agent events of this run, arriving in the run's order."""
    assert all(f["type"] in RUN_TYPES for f in frames), frames
    assert all((f["thread_id"], f["run_id"]) == (thread_id, run_id) for f in frames), frames
    places = [RUN_TYPES.index(f["type"]) for f in frames]
    assert places == sorted(places), frames
    ids = [f["event_id"] for f in frames]
    assert ids == sorted(set(ids)), ids


async def test_a_redis_outage_mid_run_refuses_new_sockets_and_loses_nothing(
    tmp_path: Path,
) -> None:
    async with own_redis_server() as redis:
        database_url = f"sqlite:///{tmp_path / 'store.db'}"
        variables = {
            "CHATGATE_JWT_SECRET": SECRET,
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_BROKER_URL": redis.url,
            "CHATGATE_BROKER_KEY_PREFIX": f"t{secrets.token_hex(6)}",
            "CHATGATE_BROKER_TIMEOUT_S": "0.5",
            "CHATGATE_DEMO_DELAY_MS": DELAY_MS,
        }
        with server_process(tmp_path, **variables) as server:
            async with (
                httpx.AsyncClient(base_url=server.http_url, timeout=RECV_TIMEOUT_S) as http,
                socket_to(server) as watcher,
            ):
                await established(watcher)
                thread_id, run_id, seen = await _outage(server, redis, http, watcher)
                await redis.start()
                body = await poll(readiness(http, 200), "/readyz 200 after Redis came back")
                assert body["failing"] == [], body
                await _recovery(
                    server, database_url, watcher, thread_id=thread_id, run_id=run_id, seen=seen
                )
        assert PASSWORD not in server.output()


async def _outage(
    server: ServerProcess, redis: RedisServer, http: httpx.AsyncClient, watcher: ClientConnection
) -> tuple[str, str, list[dict[str, Any]]]:
    """Start a run, kill Redis after agent_started; check what everyone sees while it is down."""
    assert (await http.get("/readyz")).status_code == 200
    await send_json(
        watcher, {"type": "user_message", "id": "m1", "payload": {"text": "what is 6*7?"}}
    )
    ack = await recv_json(watcher)
    assert ack["type"] == "message_ack", ack
    thread_id, run_id = ack["payload"]["thread_id"], ack["payload"]["run_id"]
    started = await recv_json(watcher)
    assert started["type"] == "agent_started", started
    await redis.stop()

    body = await poll(readiness(http, 503), "/readyz 503")
    assert body["failing"] == ["broker"], body
    assert body["checks"]["store"] == "ok", body

    async with socket_to(server) as refused:
        reason = await expect_close(refused, CloseCode.TRY_AGAIN_LATER)
    assert "broker" in reason, reason

    # The run goes on without Redis: its end reaches the store (the history API reads it).
    await poll(_assistant_answered(http, thread_id), "the run's end in the store")
    # The open socket stayed open and was told nothing false: what it got is the
    # start of the run, and no error.
    seen = [started, *await barrier(watcher)]
    assert_events_of_run(seen, thread_id, run_id)
    assert [f["event_id"] for f in seen] == list(range(1, len(seen) + 1)), seen
    return thread_id, run_id, seen


def _assistant_answered(http: httpx.AsyncClient, thread_id: str) -> Callable[[], Awaitable[bool]]:
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}

    async def check() -> bool:
        response = await http.get(f"/api/threads/{thread_id}/messages", headers=headers)
        assert response.status_code == 200, response.text
        return any(m["role"] == "assistant" for m in response.json()["messages"])

    return check


async def _recovery(
    server: ServerProcess,
    database_url: str,
    watcher: ClientConnection,
    *,
    thread_id: str,
    run_id: str,
    seen: list[dict[str, Any]],
) -> None:
    """Redis is back and the gateway ready again: the run can be read whole, live is back."""
    async with socket_to(server) as fresh:
        await established(fresh)
        await send_json(fresh, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
        frames = await recv_until(fresh, "resume_complete")
        log = await stored_log(database_url, thread_id)
        assert answer_runs([f["type"] for f in log]) == answer_runs(RUN_TYPES), log
        assert frames[-1]["payload"]["last_event_id"] == len(log), frames[-1]
        events = frames[:-1]
        # The answer's deltas come merged into one, with the id of the last.
        assert [(f["type"], f["event_id"]) for f in events] == [
            ("agent_started", 1),
            ("agent_thinking", 2),
            ("tool_executing", 3),
            ("tool_completed", 4),
            ("agent_text_delta", len(log) - 1),
            ("agent_completed", len(log)),
        ]
        assert_resumed(events, log)
        assert_events_of_run(events, thread_id, run_id)
        assert events[3]["payload"]["result"] == 42
        assert events[-1]["payload"]["status"] == "completed"
        assert answer_text(events) == events[-1]["payload"]["text"] == "6*7 = 42"

        # The socket open through the outage: a resume returns exactly what it missed.
        assert seen == log[: len(seen)]
        await send_json(watcher, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
        missed = await recv_until(watcher, "resume_complete")
        assert_resumed(missed, log, had={f["event_id"] for f in seen})
        assert_answers_assemble(seen + missed[:-1])

        # Live delivery is back for both sockets, the one from before the outage included.
        await send_json(
            fresh,
            {"type": "user_message", "id": "m2", "thread_id": thread_id, "payload": {"text": "hi"}},
        )
        assert (await recv_json(fresh))["type"] == "message_ack"
        greetings = [
            await recv_until(ws, "agent_completed", "agent_error") for ws in (fresh, watcher)
        ]
        live = greetings[0]
        assert greetings[1] == live
        greeting = greeting_run(live[-1]["payload"]["text"])
        assert answer_runs([f["type"] for f in live]) == answer_runs(greeting), live
        first = len(log) + 1
        assert [f["event_id"] for f in live] == list(range(first, first + len(live)))
        assert_answers_assemble(live)
