"""A chat survives its server process: killed mid-run, started again on the same database.

Real ``chatgate serve`` processes on a SQLite file. The restarted process
finds the run its predecessor left ``running``, proves that predecessor gone
(it ran on this host and its pid is no longer a live process), and ends the run
with ``agent_error`` ``run_interrupted``, numbered after the events that were stored.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_token

from processes import ServerProcess, run_cli, server_process
from support import SECRET, free_socket, recv_json, recv_until, send_json

# Long enough that the run is still waiting in the demo agent when the process dies.
DEMO_DELAY_MS = "60000"


def settings(database: Path) -> dict[str, str]:
    return {
        "CHATGATE_DATABASE_URL": f"sqlite:///{database}",
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_DEMO_DELAY_MS": DEMO_DELAY_MS,
    }


def a_free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def socket_to(server: ServerProcess, token: str) -> Any:
    return connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["chatgate.v1"],
        open_timeout=10,
    )


async def start_a_run(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    """Send a message; return the frames up to the agent's first thought, stored by then."""
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(
            ws, {"type": "user_message", "id": "m1", "payload": {"text": "what is 6*7?"}}
        )
        return await recv_until(ws, "agent_thinking")


async def resume(server: ServerProcess, token: str, thread_id: str) -> list[dict[str, Any]]:
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(ws, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
        return await recv_until(ws, "resume_complete")


def history(server: ServerProcess, token: str, thread_id: str) -> list[tuple[str, str]]:
    response = httpx.get(
        f"{server.http_url}/api/threads/{thread_id}/messages",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


def assert_interrupted(frame: dict[str, Any], run_id: str, event_id: int) -> None:
    assert frame["type"] == "agent_error", frame
    assert frame["run_id"] == run_id
    assert frame["event_id"] == event_id
    assert frame["payload"]["code"] == "run_interrupted"
    assert frame["payload"]["correlation_id"]
    assert frame["payload"]["message"]


async def test_a_run_killed_mid_way_ends_interrupted_after_a_restart(tmp_path: Path) -> None:
    database, port = tmp_path / "chat.db", a_free_port()
    token = mint_token(SECRET, "alice")
    with server_process(tmp_path, port=port, **settings(database)) as first:
        before = await start_a_run(first, token)
        assert [f["type"] for f in before] == ["message_ack", "agent_started", "agent_thinking"]
        first.stop(signal.SIGKILL)
    ack, live = before[0], before[1:]
    thread_id, run_id = ack["thread_id"], ack["run_id"]

    with server_process(tmp_path, port=port, **settings(database)) as second:
        resumed = await resume(second, token, thread_id)
        assert resumed[: len(live)] == live
        assert_interrupted(resumed[len(live)], run_id, len(live) + 1)
        assert resumed[len(live) + 1 :] == [resumed[-1]]
        assert resumed[-1]["type"] == "resume_complete"
        assert resumed[-1]["payload"]["last_event_id"] == len(live) + 1
        assert history(second, token, thread_id) == [("user", "what is 6*7?")]


async def test_a_run_stopped_by_sigterm_ends_once_even_after_a_restart(tmp_path: Path) -> None:
    database, port = tmp_path / "chat.db", a_free_port()
    token = mint_token(SECRET, "alice")
    with server_process(tmp_path, port=port, **settings(database)) as first:
        before = await start_a_run(first, token)
        assert first.stop(signal.SIGTERM) == 0
    ack, live = before[0], before[1:]

    with server_process(tmp_path, port=port, **settings(database)) as second:
        resumed = await resume(second, token, ack["thread_id"])
        types = [f["type"] for f in resumed]
        assert types == ["agent_started", "agent_thinking", "agent_error", "resume_complete"]
        assert resumed[: len(live)] == live
        assert_interrupted(resumed[2], ack["run_id"], 3)


def test_chatgate_migrate_prepares_a_database_ahead_of_the_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    for _ in range(2):
        done = run_cli("migrate", CHATGATE_DATABASE_URL=url)
        assert done.returncode == 0, done.stderr
        assert "schema is up to date" in done.stdout
    with sqlite3.connect(tmp_path / "chat.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"threads", "messages", "events", "runs", "instances"} <= tables


def test_chatgate_migrate_reports_a_database_that_does_not_answer() -> None:
    port = a_free_port()
    url = f"postgresql://chatgate:s3cret-pw@127.0.0.1:{port}/chat"
    done = run_cli("migrate", CHATGATE_DATABASE_URL=url)
    assert done.returncode == 1
    assert f"postgresql store at 127.0.0.1:{port}/chat unavailable" in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr


def test_chatgate_migrate_refuses_an_unknown_scheme() -> None:
    done = run_cli("migrate", CHATGATE_DATABASE_URL="mysql://db/chat")
    assert done.returncode == 2
    assert "CHATGATE_DATABASE_URL" in done.stderr
