"""Operator mistakes, each answered with one line that says what is wrong and where.

Real ``chatgate serve`` / ``chatgate migrate`` / ``chatgate token`` processes,
the local PostgreSQL and a closed port for Redis; real sockets for the refusals.
"""

from __future__ import annotations

import secrets
import stat
import subprocess
from pathlib import Path

from websockets.asyncio.client import connect

from chatgate.closecodes import CloseCode
from chatgate.transport.handshake import QUERY_STRING_REFUSAL

from databases import require_postgres
from processes import CHATGATE, base_env, free_port, run_cli, server_process
from support import SECRET, established, expect_close, running_server, send_json

EXIT_CONFIG = 2
EXIT_STORE = 1
EXIT_STARTUP = 3
STARTUP_FAILED = "chatgate: startup failed: "


def only_line_with(output: str, text: str) -> str:
    lines = [line for line in output.splitlines() if text in line]
    assert len(lines) == 1, output
    return lines[0]


# Dependencies that are down or refuse


def test_a_broker_down_at_boot_stops_it_with_one_line_naming_the_broker() -> None:
    closed = free_port()
    done = run_cli(
        "serve",
        CHATGATE_PORT=str(free_port()),
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DATABASE_URL="memory://",
        CHATGATE_BROKER_URL=f"redis://:pw-never-shown@127.0.0.1:{closed}/0",
        CHATGATE_STARTUP_TIMEOUT_S="1",
        CHATGATE_LOG_FORMAT="json",
    )
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_STARTUP, output
    only_line_with(
        output,
        f"{STARTUP_FAILED}redis broker unavailable at redis://127.0.0.1:{closed}/0; "
        "gave up after 1s (CHATGATE_STARTUP_TIMEOUT_S)",
    )
    assert "Traceback" not in output
    assert "pw-never-shown" not in output


def missing(kind: str) -> tuple[str, str]:
    """A URL whose database or role does not exist, and the server's words for it."""
    name = f"nosuch_{secrets.token_hex(4)}"
    if kind == "database":
        return f"postgresql://postgres:pw-never-shown@127.0.0.1:5432/{name}", (
            f"PostgreSQL at 127.0.0.1:5432/{name} refused the connection: "
            f'database "{name}" does not exist'
        )
    return f"postgresql://{name}:pw-never-shown@127.0.0.1:5432/test", (
        f'PostgreSQL at 127.0.0.1:5432/test refused the connection: role "{name}" does not exist'
    )


def test_serve_names_a_database_or_role_that_does_not_exist_in_one_line() -> None:
    require_postgres()
    for kind in ("database", "role"):
        url, said = missing(kind)
        done = run_cli(
            "serve",
            CHATGATE_PORT=str(free_port()),
            CHATGATE_JWT_SECRET=SECRET,
            CHATGATE_DATABASE_URL=url,
            CHATGATE_LOG_FORMAT="console",
        )
        output = done.stdout + done.stderr
        assert done.returncode == EXIT_STARTUP, output
        line = only_line_with(output, "refused the connection")
        assert f"{STARTUP_FAILED}CHATGATE_DATABASE_URL: {said}" in line
        assert "Traceback" not in output
        assert "pw-never-shown" not in output


def test_migrate_names_a_missing_database_or_role_and_a_closed_port_in_one_line() -> None:
    require_postgres()
    for kind in ("database", "role"):
        url, said = missing(kind)
        done = run_cli("migrate", CHATGATE_DATABASE_URL=url)
        assert done.returncode == EXIT_STORE, done.stderr
        assert done.stderr.splitlines() == [f"chatgate: CHATGATE_DATABASE_URL: {said}"]
        assert "pw-never-shown" not in done.stdout + done.stderr
    closed = free_port()
    done = run_cli(
        "migrate", CHATGATE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/test"
    )
    assert done.returncode == EXIT_STORE
    assert done.stderr.splitlines() == [
        f"chatgate: postgresql store at 127.0.0.1:{closed}/test unavailable: ConnectionRefusedError"
    ]


# Refusals that say why


async def test_a_plain_get_of_the_socket_path_is_426_upgrade_required() -> None:
    async with running_server() as server, server.http() as http:
        response = await http.get("/ws")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert len(response.text.strip().splitlines()) == 1
    assert "WebSocket" in response.text


async def test_a_foreign_origin_is_named_in_the_close_and_logged_once(tmp_path: Path) -> None:
    long_origin = "https://" + "sub." * 60 + "example.com"
    with server_process(
        tmp_path, CHATGATE_JWT_SECRET=SECRET, CHATGATE_DATABASE_URL="memory://"
    ) as server:
        async with connect(server.ws_url, origin="https://evil.example") as ws:  # type: ignore[arg-type]
            reason = await expect_close(ws, CloseCode.ORIGIN_DENIED)
        assert (
            reason
            == "origin_denied: https://evil.example not allowed; see CHATGATE_ALLOWED_ORIGINS"
        )
        async with connect(server.ws_url, origin=long_origin) as ws:  # type: ignore[arg-type]
            reason = await expect_close(ws, CloseCode.ORIGIN_DENIED)
        assert len(reason.encode()) <= 123
        assert reason.startswith("origin_denied: https://sub.sub.")
        assert reason.endswith("... not allowed; see CHATGATE_ALLOWED_ORIGINS")
        output = server.output()
    assert [line for line in output.splitlines() if "origin not allowed" in line and "evil" in line]


async def test_invalid_json_as_the_first_frame_is_4000_naming_the_json_error() -> None:
    async with running_server() as server, server.connect() as ws:
        await ws.send("{not json")
        reason = await expect_close(ws, CloseCode.BAD_REQUEST)
    assert reason.startswith("bad_request: first frame is not JSON: unexpected character")


async def test_a_query_string_token_is_refused_at_once_and_never_logged(tmp_path: Path) -> None:
    token = "query-token-never-logged-0123456789"
    # An auth timeout far beyond the client's receive timeout: only an immediate close passes.
    with server_process(
        tmp_path,
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DATABASE_URL="memory://",
        CHATGATE_AUTH_TIMEOUT_S="120",
    ) as server:
        async with connect(f"{server.ws_url}?token={token}") as ws:
            reason = await expect_close(ws, CloseCode.AUTH_REQUIRED)
        output = server.output()
    assert reason == f"auth_required: {QUERY_STRING_REFUSAL}"
    assert token not in output


async def test_a_first_auth_message_still_works_without_a_query_token() -> None:
    async with running_server() as server, server.connect() as ws:
        await send_json(ws, {"type": "auth", "token": server.token("alice")})
        assert (await established(ws))["payload"]["user_id"] == "alice"


async def test_diagnostics_refused_in_production_names_the_admin_token_setting() -> None:
    async with running_server(environment="production") as server, server.http() as http:
        response = await http.get("/diagnostics")
    assert response.status_code == 403
    assert "CHATGATE_ADMIN_TOKEN" in response.json()["detail"]


# chatgate token and the development secret


def test_token_refuses_what_the_server_would_refuse() -> None:
    empty = run_cli("token", "--sub", " ", CHATGATE_JWT_SECRET=SECRET)
    assert (empty.returncode, empty.stdout) == (EXIT_CONFIG, "")
    assert empty.stderr.splitlines() == ["chatgate: --sub is empty: a token must name its user"]
    short = run_cli("token", "--sub", "bob", CHATGATE_JWT_SECRET="too-short-0123456789")
    assert (short.returncode, short.stdout) == (EXIT_CONFIG, "")
    assert short.stderr.splitlines() == [
        (
            "chatgate: CHATGATE_JWT_SECRET is too short: HS256 needs at least 32 bytes, "
            "and the server refuses a shorter one"
        )
    ]


def token_in(directory: Path, sub: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHATGATE, "token", "--sub", sub],
        env=base_env(),
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def user_of(url: str, token: str) -> str:
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        return str((await established(ws))["payload"]["user_id"])


async def test_in_development_chatgate_token_mints_for_the_dev_server(tmp_path: Path) -> None:
    kept = tmp_path / "chatgate.dev-secret"
    before = token_in(tmp_path, "bob")
    assert before.returncode == EXIT_CONFIG
    assert "does not exist yet: run chatgate serve once" in before.stderr

    with server_process(tmp_path) as first:
        banner = first.stdout_path.read_text()
        assert f"chat page: http://127.0.0.1:{first.port}/#token=" in banner
        assert "chatgate token --sub <name>" in banner
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        minted = token_in(tmp_path, "bob")
        assert minted.returncode == 0, minted.stderr
        bob = minted.stdout.strip()
        assert await user_of(first.ws_url, bob) == "bob"
    secret = kept.read_text()

    with server_process(tmp_path) as second:
        assert await user_of(second.ws_url, bob) == "bob"
    assert kept.read_text() == secret


def test_with_a_memory_store_the_dev_secret_is_never_written(tmp_path: Path) -> None:
    with server_process(tmp_path, CHATGATE_DATABASE_URL="memory://") as server:
        banner = server.stdout_path.read_text()
    assert "an ephemeral JWT secret was generated" in banner
    assert "chatgate token --sub" not in banner
    assert list(tmp_path.glob("*.dev-secret")) == []


def test_the_e2e_note_is_calm_in_development_and_a_warning_in_staging(tmp_path: Path) -> None:
    with server_process(tmp_path, CHATGATE_DATABASE_URL="memory://") as dev:
        output = dev.output()
    note = only_line_with(output, "docs/e2e-testing.md")
    assert '"level": "info"' in note
    assert "E2E test mode is on but" not in output

    staging = {
        "ENVIRONMENT": "staging",
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_DATABASE_URL": "memory://",
    }
    with server_process(tmp_path, **staging) as server:
        output = server.output()
    warning = only_line_with(output, "E2E_OAUTH_SIMULATION_KEY is not set")
    assert '"level": "warning"' in warning
