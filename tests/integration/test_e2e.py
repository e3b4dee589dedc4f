"""E2E test mode against a real server, tier by tier (docs/protocol.md section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.closecodes import CloseCode

from support import (
    E2E_KEY,
    chat,
    established,
    expect_close,
    recv_json,
    running_server,
    send_json,
)

STAGING = {"environment": "staging"}
INFERRED_STAGING = {"k_service": "chat-staging", "google_cloud_project": "acme-staging"}
PRODUCTION = {"environment": "production"}
CLOUD_RUN_NO_TIER = {"k_service": "chat-api"}
ROLLBACK = {"disable_enhanced_e2e_detection": True}
E2E_FLAG = {"e2e_testing": True}
KEY = {"e2e_oauth_simulation_key": E2E_KEY}

TIER_CASES: list[tuple[str, dict[str, Any], CloseCode | None]] = [
    ("development", {}, None),
    ("test", {"environment": "test"}, None),
    ("development-rollback-flag", {"environment": "dev", **ROLLBACK}, None),
    ("staging", STAGING, None),
    ("staging-inferred", INFERRED_STAGING, None),
    ("staging-rollback", {**STAGING, **ROLLBACK}, CloseCode.E2E_NOT_ENABLED),
    ("staging-inferred-rollback", {**INFERRED_STAGING, **ROLLBACK}, CloseCode.E2E_NOT_ENABLED),
    ("staging-rollback-e2e-testing", {**STAGING, **ROLLBACK, **E2E_FLAG}, None),
    ("production", PRODUCTION, CloseCode.E2E_NOT_ENABLED),
    (
        "production-staging-named",
        {**PRODUCTION, "k_service": "chat-staging"},
        CloseCode.E2E_NOT_ENABLED,
    ),
    ("cloud-run-without-tier", CLOUD_RUN_NO_TIER, CloseCode.E2E_NOT_ENABLED),
    ("product-api-is-not-production", {"k_service": "product-api-staging"}, None),
]


@pytest.mark.parametrize(
    ("overrides", "closed_with"), [c[1:] for c in TIER_CASES], ids=[c[0] for c in TIER_CASES]
)
async def test_test_token_by_tier(overrides: dict[str, Any], closed_with: CloseCode | None) -> None:
    async with (
        running_server(**KEY, **overrides) as server,
        server.connect(server.test_token("bot1")) as ws,
    ):
        if closed_with is not None:
            reason = await expect_close(ws, closed_with)
            assert E2E_KEY not in reason
            return
        hello = await established(ws)
        payload = hello["payload"]
        assert payload["user_id"] == "e2e:bot1"
        assert payload["e2e"]["is_e2e_testing"] is True
        assert payload["e2e"]["detection_method"]["via_headers"] is False
        frames = await chat(ws, "what is 6*7?")
        assert frames[-1]["type"] == "agent_completed"


async def test_e2e_context_flags_in_staging() -> None:
    async with (
        running_server(**KEY, **INFERRED_STAGING) as server,
        server.connect(server.test_token("bot"), additional_headers={"X-E2E-Test": "true"}) as ws,
    ):
        context = (await established(ws))["payload"]["e2e"]
    assert context["environment"] == "staging"
    assert context["k_service"] == "chat-staging"
    assert context["google_cloud_project"] == "acme-staging"
    assert context["enhanced_detection"] is True
    assert context["detection_method"] == {
        "via_headers": True,
        "via_environment": True,
        "via_env_vars": False,
        "via_staging_auto_detection": True,
    }
    assert context["policy_version"]


async def test_user_token_session_has_no_e2e_context() -> None:
    async with (
        running_server(**KEY, **STAGING) as server,
        server.connect(server.token("alice")) as ws,
    ):
        assert (await established(ws))["payload"]["e2e"] is None


async def test_e2e_on_without_key_closes_4003() -> None:
    async with running_server(**STAGING) as server, server.connect(server.test_token("bot")) as ws:
        reason = await expect_close(ws, CloseCode.AUTH_INVALID)
    assert reason == "auth_invalid: e2e key not configured"


@pytest.mark.parametrize(
    "problem",
    ["wrong_key", "main_key", "no_e2e_claim", "too_long"],
)
async def test_bad_test_tokens_close_4003(problem: str) -> None:
    import jwt  # noqa: PLC0415

    from chatgate.auth.minting import mint_test_token  # noqa: PLC0415

    from support import SECRET  # noqa: PLC0415

    async with running_server(**KEY, **STAGING) as server:
        now = 1_900_000_000
        token = {
            "wrong_key": lambda: mint_test_token("another-e2e-key-0123456789abcdef-xyz", "bot"),
            "main_key": lambda: mint_test_token(SECRET, "bot"),
            "no_e2e_claim": lambda: jwt.encode(
                {"sub": "bot", "iat": now - 10, "exp": now + 60}, E2E_KEY, headers={"kid": "e2e"}
            ),
            "too_long": lambda: jwt.encode(
                {"sub": "bot", "iat": 1_000, "exp": now, "e2e": True},
                E2E_KEY,
                headers={"kid": "e2e"},
            ),
        }[problem]()
        async with server.connect(token) as ws:
            await expect_close(ws, CloseCode.AUTH_INVALID)


@pytest.mark.parametrize("tier", [STAGING, PRODUCTION], ids=["staging", "production"])
async def test_test_headers_alone_grant_nothing(tier: dict[str, Any]) -> None:
    headers = {
        "X-E2E-Test": "true",
        "X-Test-Mode": "1",
        "X-E2E-Bypass": "true",
        "X-Environment": "staging",
    }
    async with (
        running_server(**KEY, **tier, auth_timeout_s=0.3) as server,
        server.connect(None, additional_headers=headers) as ws,
    ):
        await expect_close(ws, CloseCode.AUTH_REQUIRED)


async def test_test_user_never_reads_the_real_users_threads() -> None:
    async with running_server(**KEY, **STAGING) as server:
        async with server.connect(server.token("alice")) as real:
            await established(real)
            thread_id = (await chat(real, "what is 1+1?"))[0]["thread_id"]
        async with server.connect(server.test_token("alice")) as fake:
            assert (await established(fake))["payload"]["user_id"] == "e2e:alice"
            await send_json(
                fake, {"type": "resume", "id": "r", "thread_id": thread_id, "after_event_id": 0}
            )
            error = await recv_json(fake)
            assert error["type"] == "error"
            assert error["payload"]["code"] == "thread_not_found"
            frames = await chat_error(fake, thread_id)
            assert frames["payload"]["code"] == "thread_not_found"


async def chat_error(ws: Any, thread_id: str) -> dict[str, Any]:
    await send_json(
        ws, {"type": "user_message", "id": "x", "thread_id": thread_id, "payload": {"text": "hi"}}
    )
    frame = await recv_json(ws)
    assert frame["type"] == "error"
    return frame


async def test_diagnostics_outside_production() -> None:
    async with running_server(**KEY, **STAGING) as server, server.http() as http:
        response = await http.get("/diagnostics", headers={"X-E2E-Test": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["tier"] == "staging"
    assert body["tier_source"] == "ENVIRONMENT"
    assert body["e2e"]["enabled"] is True
    assert body["e2e"]["is_e2e_testing"] is True
    assert body["e2e"]["detection_method"]["via_headers"] is True
    assert body["e2e"]["detection_method"]["via_staging_auto_detection"] is True
    assert body["limits"]["max_message_bytes"] == 65536
    assert body["store"] == "memory"
    assert body["broker"] == "memory"
    assert E2E_KEY not in response.text


async def test_diagnostics_counts_closes() -> None:
    async with running_server(**KEY, **PRODUCTION, admin_token="admin-token-0123456789") as server:
        async with server.connect(server.test_token("bot")) as ws:
            await expect_close(ws, CloseCode.E2E_NOT_ENABLED)
        async with server.http() as http:
            body = (
                await http.get(
                    "/diagnostics", headers={"Authorization": "Bearer admin-token-0123456789"}
                )
            ).json()
    assert body["closes"].get("4005") == 1
    assert body["e2e"]["enabled"] is False
    assert body["e2e"]["is_e2e_testing"] is False


@pytest.mark.parametrize(
    ("admin_token", "presented", "status"),
    [
        (None, None, 403),
        (None, "Bearer anything", 403),
        ("admin-token-0123456789", None, 403),
        ("admin-token-0123456789", "Bearer wrong-token", 403),
        ("admin-token-0123456789", "Basic admin-token-0123456789", 403),
        ("admin-token-0123456789", "Bearer admin-token-0123456789", 200),
    ],
)
async def test_diagnostics_in_production_needs_the_admin_token(
    admin_token: str | None, presented: str | None, status: int
) -> None:
    extra = {"admin_token": admin_token} if admin_token else {}
    async with running_server(**PRODUCTION, **extra) as server, server.http() as http:
        headers = {"Authorization": presented} if presented else {}
        response = await http.get("/diagnostics", headers=headers)
    assert response.status_code == status
    if status == 403:
        assert "tier" not in response.json()


@pytest.mark.parametrize(
    ("tier", "status", "error"),
    [
        (STAGING, 200, None),
        ({**STAGING, **ROLLBACK}, 401, "e2e_not_enabled"),
        (PRODUCTION, 401, "e2e_not_enabled"),
    ],
    ids=["staging", "staging-rollback", "production"],
)
async def test_the_history_api_follows_the_same_e2e_policy(
    tier: dict[str, Any], status: int, error: str | None
) -> None:
    async with running_server(**KEY, **tier) as server, server.http() as http:
        token = server.test_token("bot1")
        response = await http.get("/api/threads", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    if error is not None:
        assert response.json()["error"] == error
        assert token not in response.text
    else:
        assert response.json()["threads"] == []
