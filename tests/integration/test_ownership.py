"""Which process may end a run: never one that cannot prove the run's process gone.

Real ``chatgate serve`` processes sharing a SQLite file. A second ``serve``
on a port in use stops before it touches the store; a process killed mid-run
has its runs ended by a live one once its lease expires.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_token

from databases import postgres_schema
from processes import ServerProcess, free_port, run_cli, server_process
from redis_service import require_redis
from support import SECRET, recv_json, recv_until, send_json

EXIT_CONFIG = 2
# The run stays open in the demo agent until cancelled.
DEMO_DELAY_MS = "60000"
LEASE_WAIT_S = 20.0


def socket_to(server: ServerProcess, token: str) -> Any:
    return connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["chatgate.v1"],
        open_timeout=10,
    )


async def start_a_run(server: ServerProcess, token: str) -> dict[str, Any]:
    """Start a run; return its message_ack once the agent is thinking (the run is stored)."""
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(ws, {"type": "user_message", "id": "m1", "payload": {"text": "6*7?"}})
        frames = await recv_until(ws, "agent_thinking")
    assert [f["type"] for f in frames] == ["message_ack", "agent_started", "agent_thinking"]
    return frames[0]


async def thread_log(server: ServerProcess, token: str, thread_id: str) -> list[dict[str, Any]]:
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(ws, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
        frames = await recv_until(ws, "resume_complete")
    return frames[:-1]


async def cancel(server: ServerProcess, token: str, run_id: str) -> dict[str, Any]:
    async with socket_to(server, token) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await send_json(ws, {"type": "cancel", "id": "c1", "run_id": run_id})
        return (await recv_until(ws, "agent_completed", "agent_error", "error"))[-1]


async def test_a_second_serve_on_a_busy_port_exits_2_and_leaves_the_live_run_alone(
    tmp_path: Path,
) -> None:
    database, port = tmp_path / "chat.db", free_port()
    token = mint_token(SECRET, "alice")
    url = f"sqlite:///{database}"
    with server_process(
        tmp_path,
        port=port,
        CHATGATE_DATABASE_URL=url,
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DEMO_DELAY_MS=DEMO_DELAY_MS,
    ) as live:
        ack = await start_a_run(live, token)
        # Development tier and no key: a process that booted would print a dev token.
        second = run_cli("serve", CHATGATE_PORT=str(port), CHATGATE_DATABASE_URL=url)
        assert second.returncode == EXIT_CONFIG, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert lines == [
            (
                f"chatgate: port {port} on 127.0.0.1 is already in use (another chatgate serve?); "
                "stop it or choose another port (CHATGATE_PORT or --port)"
            )
        ]
        assert second.stdout == ""
        assert not database.with_suffix(".dev-secret").exists()

        ended = await cancel(live, token, ack["run_id"])
        assert ended["type"] == "agent_completed", ended
        assert ended["payload"]["status"] == "cancelled"
        log = await thread_log(live, token, ack["thread_id"])
    assert [(e["event_id"], e["type"]) for e in log] == [
        (1, "agent_started"),
        (2, "agent_thinking"),
        (3, "agent_completed"),
    ]


async def test_a_live_process_ends_the_runs_of_a_killed_one_when_its_lease_expires(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    token = mint_token(SECRET, "alice")
    variables = {
        "CHATGATE_DATABASE_URL": f"sqlite:///{database}",
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_DEMO_DELAY_MS": DEMO_DELAY_MS,
        "CHATGATE_INSTANCE_HEARTBEAT_S": "0.2",
    }
    with (
        server_process(tmp_path, **variables) as survivor,
        server_process(tmp_path, **variables) as doomed,
    ):
        ack = await start_a_run(doomed, token)
        doomed.stop(signal.SIGKILL)
        log = await thread_log(survivor, token, ack["thread_id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_WAIT_S
        while len(log) < 3 and loop.time() < deadline:
            await asyncio.sleep(0.1)
            log = await thread_log(survivor, token, ack["thread_id"])
    assert [(e["event_id"], e["type"]) for e in log] == [
        (1, "agent_started"),
        (2, "agent_thinking"),
        (3, "agent_error"),
    ]
    assert log[2]["payload"]["code"] == "run_interrupted"
    assert log[2]["run_id"] == ack["run_id"]


async def test_a_cancel_sent_to_another_instance_right_after_the_ack_is_not_lost(
    tmp_path: Path,
) -> None:
    token = mint_token(SECRET, "alice")
    async with postgres_schema() as database_url:
        variables = {
            "CHATGATE_JWT_SECRET": SECRET,
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_BROKER_URL": require_redis(),
            "CHATGATE_BROKER_KEY_PREFIX": f"t{secrets.token_hex(6)}",
            "CHATGATE_DEMO_DELAY_MS": DEMO_DELAY_MS,
        }
        with (
            server_process(tmp_path, **variables) as a,
            server_process(tmp_path, **variables) as b,
        ):
            async with socket_to(a, token) as on_a, socket_to(b, token) as on_b:
                assert (await recv_json(on_a))["type"] == "connection_established"
                assert (await recv_json(on_b))["type"] == "connection_established"
                await send_json(
                    on_a, {"type": "user_message", "id": "m", "payload": {"text": "6*7?"}}
                )
                ack = await recv_json(on_a)
                assert ack["type"] == "message_ack", ack
                # At once: the run's record may not be committed yet.
                await send_json(on_b, {"type": "cancel", "id": "c", "run_id": ack["run_id"]})
                final = (await recv_until(on_b, "agent_completed", "agent_error", "error"))[-1]
    assert final["type"] == "agent_completed", final
    assert final["payload"]["status"] == "cancelled"
    assert final["run_id"] == ack["run_id"]
