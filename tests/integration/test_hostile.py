"""A deployment that forgot something fails closed; what a hostile client sends is refused.

The tier follows the listening address when nothing names it, an empty admin
token opens nothing, a test key equal to the JWT secret stops the boot, and
malformed frames get ``error`` frames or a close of the table, never 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from chatgate.closecodes import CloseCode

from databases import database_url
from processes import free_port, run_cli
from support import (
    E2E_KEY,
    RECV_TIMEOUT_S,
    SECRET,
    established,
    expect_close,
    recv_json,
    running_server,
    send_json,
)

_CONFIG_ERROR = 2


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_listening_on_every_interface_without_a_tier_is_production() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))  # noqa: S104
    assert result.returncode == _CONFIG_ERROR, result.stdout + result.stderr
    line = _one_line(result.stdout + result.stderr)
    assert "CHATGATE_JWT_SECRET" in line
    assert "production" in line


def test_kubernetes_without_a_tier_is_production() -> None:
    result = run_cli("serve", "--port", str(free_port()), KUBERNETES_SERVICE_HOST="10.96.0.1")
    assert result.returncode == _CONFIG_ERROR, result.stdout + result.stderr
    assert "CHATGATE_JWT_SECRET" in _one_line(result.stdout + result.stderr)


def test_a_test_key_equal_to_the_jwt_secret_stops_the_boot() -> None:
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        ENVIRONMENT="staging",
        CHATGATE_JWT_SECRET=SECRET,
        E2E_OAUTH_SIMULATION_KEY=SECRET,
    )
    output = result.stdout + result.stderr
    assert result.returncode == _CONFIG_ERROR, output
    line = _one_line(output)
    assert line.startswith("chatgate: configuration error: E2E_OAUTH_SIMULATION_KEY:"), line
    assert SECRET not in output


@pytest.mark.parametrize("admin_token", ["", "   "])
# The server strips the trailing space of "Bearer ": it arrives as "Bearer".
@pytest.mark.parametrize("presented", ["Bearer", None])
async def test_an_empty_admin_token_opens_nothing(admin_token: str, presented: str | None) -> None:
    async with (
        running_server(environment="production", admin_token=admin_token) as server,
        server.http() as http,
    ):
        headers = {"Authorization": presented} if presented is not None else {}
        response = await http.get("/diagnostics", headers=headers)
    assert response.status_code == 403
    assert "tier" not in response.json()


async def test_a_distinct_test_key_still_boots() -> None:
    async with (
        running_server(environment="staging", e2e_oauth_simulation_key=E2E_KEY) as server,
        server.http() as http,
    ):
        assert (await http.get("/healthz")).status_code == 200


# Frames


async def test_a_ping_flood_is_rate_limited_and_closed_4100() -> None:
    async with running_server() as server, server.connect(server.token("pinger")) as ws:
        await established(ws)
        with contextlib.suppress(ConnectionClosed):
            for _ in range(1000):
                await ws.ping()
        await expect_close(ws, CloseCode.RATE_LIMITED)


async def test_pings_and_messages_share_one_rate_limit() -> None:
    async with (
        running_server(rate_limit_messages=5) as server,
        server.connect(server.token("sharer")) as ws,
    ):
        await established(ws)
        for _ in range(5):
            await asyncio.wait_for(await ws.ping(), RECV_TIMEOUT_S)
        await send_json(ws, {"type": "ping", "id": "p1"})
        answer = await recv_json(ws)
    assert answer["type"] == "error", answer
    assert answer["payload"]["code"] == "rate_limited"
    assert answer["payload"]["id"] == "p1"


@pytest.mark.parametrize(
    "payload", [b"\xff", b"\xc3", b'{"type":"ping","id":"\xed\xa0\x80"}', b"ok\x80"]
)
async def test_text_that_is_not_utf8_closes_1007_without_a_traceback(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_server() as server, server.connect(server.token("mojibake")) as ws:
        await established(ws)
        await ws.send(payload, text=True)
        await expect_close(ws, CloseCode.INVALID_PAYLOAD)
    server_side = [r for r in caplog.records if r.name.startswith(("chatgate", "uvicorn"))]
    loud = [r for r in server_side if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    # Past websockets' own frame-by-frame DEBUG trace, the close is one line.
    mentions = [
        r for r in server_side if r.name.startswith("chatgate") and "UTF-8" in r.getMessage()
    ]
    assert [r.levelno for r in mentions] == [logging.DEBUG]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "resume", "id": "r", "thread_id": "th_x", "after_event_id": 2**63},
        {"type": "resume", "id": "r", "thread_id": "th_x", "after_event_id": 2**64 - 1},
        {"type": "user_message", "id": "r", "payload": {"text": "nul \x00 inside"}},
        {"type": "user_message", "id": "r", "thread_id": "th\x00", "payload": {"text": "hi"}},
        {"type": "cancel", "id": "r", "run_id": "run_\x00"},
    ],
    ids=["after-2^63", "after-2^64-1", "nul-text", "nul-thread", "nul-run"],
)
@pytest.mark.parametrize(
    "store", ["memory", pytest.param("postgresql", marks=pytest.mark.integration)]
)
async def test_out_of_range_and_nul_are_invalid_messages(
    frame: dict[str, Any], store: str, tmp_path: Path
) -> None:
    async with (
        database_url(store, tmp_path) as url,
        running_server(database_url=url) as server,
        server.connect(server.token("edge")) as ws,
    ):
        await established(ws)
        await send_json(ws, frame)
        answer = await recv_json(ws)
        assert answer["type"] == "error", answer
        assert answer["payload"]["code"] == "invalid_message"
        assert answer["payload"]["id"] == "r"
        # The socket is still open and answers.
        await send_json(ws, {"type": "ping", "id": "after"})
        assert (await recv_json(ws))["type"] == "pong"


async def test_an_integer_id_past_64_bits_is_refused_without_an_echo() -> None:
    async with running_server() as server, server.connect(server.token("big-id")) as ws:
        await established(ws)
        await ws.send('{"type":"ping","id":18446744073709551615}')
        answer = await recv_json(ws)
    assert answer["type"] == "error"
    assert answer["payload"]["code"] == "invalid_message"
    assert "id" not in answer["payload"]
