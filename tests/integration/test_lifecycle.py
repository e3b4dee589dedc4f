"""The process: health endpoints, draining on SIGTERM, refusing to boot on bad configuration.

The SIGTERM and boot tests run ``chatgate serve`` as a real subprocess with a
controlled environment, as a container runtime would.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_token
from chatgate.closecodes import CloseCode

from processes import free_port, run_cli, server_process
from support import RECV_TIMEOUT_S, established, expect_close, recv_json, running_server

PROCESS_SECRET = "lifecycle-secret-0123456789abcdef-0123456789"
BOOT_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 8.0
EXIT_CONFIG = 2


async def test_healthz_and_readyz() -> None:
    async with running_server() as server, server.http() as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text


async def test_sigterm_closes_sockets_1012_and_exits_in_time(tmp_path: Path) -> None:
    token = mint_token(PROCESS_SECRET, "alice")
    with server_process(tmp_path, CHATGATE_JWT_SECRET=PROCESS_SECRET) as server:
        async with connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=RECV_TIMEOUT_S,
        ) as ws:
            hello = await established(ws)
            assert hello["payload"]["user_id"] == "alice"
            await ws.send('{"type": "ping", "id": "before"}')
            assert (await recv_json(ws))["type"] == "pong"
            server.process.send_signal(signal.SIGTERM)
            await expect_close(ws, CloseCode.SERVICE_RESTART)
        # Draining: the listener is closed before open sockets are told to go.
        with pytest.raises(ConnectionRefusedError):
            async with connect(server.ws_url, open_timeout=RECV_TIMEOUT_S):
                pass
        returncode = await asyncio.to_thread(server.process.wait, EXIT_TIMEOUT_S)
        output = server.output()
    # An orderly drain exits 0.
    assert returncode == 0, output
    assert PROCESS_SECRET not in output
    assert token not in output


BOOT_ERRORS = {
    "unknown_environment": ({"ENVIRONMENT": "bogus"}, "ENVIRONMENT"),
    "port_not_a_number": ({"CHATGATE_PORT": "notaport"}, "CHATGATE_PORT"),
    "agent_not_importable": ({"CHATGATE_AGENT": "nope.nothing:X"}, "CHATGATE_AGENT"),
    "algorithm_none": ({"CHATGATE_JWT_ALGORITHMS": "none"}, "CHATGATE_JWT_ALGORITHMS"),
    "production_without_secret": ({"ENVIRONMENT": "production"}, "CHATGATE_JWT_SECRET"),
    "unknown_database_scheme": ({"CHATGATE_DATABASE_URL": "weird://x"}, "CHATGATE_DATABASE_URL"),
    "short_secret": ({"CHATGATE_JWT_SECRET": "short-secret"}, "CHATGATE_JWT_SECRET"),
}


@pytest.mark.parametrize("case", sorted(BOOT_ERRORS))
def test_bad_configuration_stops_the_boot_with_exit_2_naming_the_variable(case: str) -> None:
    variables, named = BOOT_ERRORS[case]
    # A free port, so that a server that wrongly starts cannot meet another one;
    # one that starts anyway runs into the timeout and fails the test.
    result = run_cli(
        "serve", timeout=BOOT_TIMEOUT_S, **{"CHATGATE_PORT": str(free_port()), **variables}
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EXIT_CONFIG, lines
    assert len(lines) == 1, lines
    assert named in lines[0], lines
    if "CHATGATE_JWT_SECRET" in variables:
        assert variables["CHATGATE_JWT_SECRET"] not in lines[0]
