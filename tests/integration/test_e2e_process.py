"""E2E test mode in a real ``chatgate serve`` process: startup lines, refusals, no leaked secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_test_token, mint_token

from processes import run_cli, server_process
from support import E2E_KEY, SECRET, established, recv_until, send_json

ADMIN = "admin-token-0123456789-abcdef"


def test_production_refuses_e2e_testing() -> None:
    result = run_cli(
        "serve", ENVIRONMENT="production", E2E_TESTING="1", CHATGATE_JWT_SECRET=SECRET, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "E2E_TESTING" in lines[0]


def test_inferred_production_refuses_e2e_testing() -> None:
    result = run_cli(
        "serve", K_SERVICE="chat-prod", E2E_TESTING="1", CHATGATE_JWT_SECRET=SECRET, timeout=60
    )
    assert result.returncode == 2
    assert "E2E_TESTING" in result.stderr


async def _exercise(url: str, tokens: list[str]) -> None:
    for token in tokens:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await established(ws)
            await send_json(
                ws, {"type": "user_message", "id": "1", "payload": {"text": "what is 2+2?"}}
            )
            await recv_until(ws, "agent_completed")
            await send_json(ws, {"type": "token_refresh", "token": token})
            await recv_until(ws, "token_refreshed")


def test_keys_and_tokens_appear_in_no_output(tmp_path: Path) -> None:
    env = {
        "K_SERVICE": "chat-staging",
        "E2E_OAUTH_SIMULATION_KEY": E2E_KEY,
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_ADMIN_TOKEN": ADMIN,
        "CHATGATE_LOG_LEVEL": "DEBUG",
    }
    test_token = mint_test_token(E2E_KEY, "bot1")
    user_token = mint_token(SECRET, "alice")
    with server_process(tmp_path, **env) as server:
        asyncio.run(_exercise(server.ws_url, [test_token, user_token]))
        diagnostics = httpx.get(
            f"{server.http_url}/diagnostics", headers={"X-E2E-Test": "1"}, timeout=5
        ).text
        server.stop()
        output = server.output()
    for secret in (E2E_KEY, SECRET, ADMIN, test_token, user_token):
        assert secret not in output
        assert secret not in diagnostics
    # The token's signature alone must not leak either.
    for token in (test_token, user_token):
        assert token.rsplit(".", 1)[1] not in output
    assert output.count("ENHANCED E2E DETECTION: Auto-enabled for staging environment") == 1
    assert output.count("E2E CONTEXT DETECTED") == 1
    assert json.loads(diagnostics)["e2e"]["detection_method"]["via_headers"] is True


def test_rollback_flag_is_announced(tmp_path: Path) -> None:
    env = {
        "ENVIRONMENT": "staging",
        "DISABLE_ENHANCED_E2E_DETECTION": "1",
        "CHATGATE_JWT_SECRET": SECRET,
    }
    with server_process(tmp_path, **env) as server:
        server.stop()
        output = server.output()
    assert output.count("E2E DETECTION: disabled by DISABLE_ENHANCED_E2E_DETECTION") == 1
    assert "Auto-enabled" not in output


def test_key_in_production_is_ignored_with_a_warning(tmp_path: Path) -> None:
    env = {
        "ENVIRONMENT": "production",
        "E2E_OAUTH_SIMULATION_KEY": E2E_KEY,
        "CHATGATE_JWT_SECRET": SECRET,
    }
    with server_process(tmp_path, **env) as server:
        server.stop()
        output = server.output()
    assert "E2E_OAUTH_SIMULATION_KEY is set in production" in output
    assert E2E_KEY not in output


def test_token_command_mints_verifiable_tokens() -> None:
    import jwt  # noqa: PLC0415

    user = run_cli(
        "token",
        "--sub",
        "alice",
        "--ttl",
        "120",
        "--aud",
        "chat",
        "--iss",
        "idp",
        CHATGATE_JWT_SECRET=SECRET,
    )
    assert user.returncode == 0, user.stderr
    claims = jwt.decode(
        user.stdout.strip(), SECRET, algorithms=["HS256"], audience="chat", issuer="idp"
    )
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 120

    expired = run_cli("token", "--sub", "alice", "--ttl", "-30", CHATGATE_JWT_SECRET=SECRET)
    assert (
        jwt.decode(
            expired.stdout.strip(), SECRET, algorithms=["HS256"], options={"verify_exp": False}
        )["exp"]
        < (
            jwt.decode(
                expired.stdout.strip(), SECRET, algorithms=["HS256"], options={"verify_exp": False}
            )["iat"]
        )
    )

    test = run_cli("token", "--e2e", "--sub", "bot1", E2E_OAUTH_SIMULATION_KEY=E2E_KEY)
    assert test.returncode == 0, test.stderr
    token = test.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == "e2e"
    assert jwt.decode(token, E2E_KEY, algorithms=["HS256"])["e2e"] is True

    missing = run_cli("token", "--e2e", "--sub", "bot1")
    assert missing.returncode == 2
    assert "E2E_OAUTH_SIMULATION_KEY" in missing.stderr
