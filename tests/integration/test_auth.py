"""Authenticating a socket (docs/protocol.md section 2): credentials, rejections, origins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from chatgate.closecodes import CloseCode

from support import (
    RECV_TIMEOUT_S,
    SECRET,
    expect_close,
    frames_until_close,
    recv_json,
    recv_until,
    running_server,
    send_json,
    sign_token,
    unsigned_token,
    user_claims,
)

OTHER_SECRET = "another-secret-0123456789abcdef-0123456789"


# Each credential mode


async def test_authorization_header_authenticates() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"
        assert hello["payload"]["user_id"] == "alice"
        assert hello["payload"]["protocol"] == "chatgate.v1"
        assert hello["event_id"] is None


async def test_subprotocol_authenticates_selects_chatgate_and_never_echoes_the_token() -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with server.connect(subprotocols=["chatgate.v1", f"bearer.{token}"]) as ws:
            assert ws.subprotocol == "chatgate.v1"
            assert ws.response is not None
            for name, value in ws.response.headers.raw_items():
                assert token not in value, name
                assert "bearer." not in value.lower(), name
            hello = await recv_json(ws)
            assert hello["type"] == "connection_established"
            assert hello["payload"]["user_id"] == "alice"


async def test_first_message_auth_authenticates() -> None:
    async with running_server() as server, server.connect() as ws:
        await send_json(ws, {"type": "auth", "token": server.token("alice")})
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"
        assert hello["payload"]["user_id"] == "alice"
        await send_json(ws, {"type": "ping", "id": "p1"})
        pong = await recv_json(ws)
        assert pong["type"] == "pong"


# 4001 auth_required


async def test_non_auth_first_message_closes_4001() -> None:
    async with running_server() as server, server.connect() as ws:
        await send_json(ws, {"type": "ping", "id": "p1"})
        await expect_close(ws, CloseCode.AUTH_REQUIRED)


async def test_user_message_before_auth_is_not_processed() -> None:
    async with running_server() as server, server.connect() as ws:
        await send_json(ws, {"type": "user_message", "id": "m1", "payload": {"text": "1+1"}})
        frames = await frames_until_close(ws, CloseCode.AUTH_REQUIRED)
        assert frames == []


async def test_no_credential_within_auth_timeout_closes_4001() -> None:
    async with running_server(auth_timeout_s=0.3) as server, server.connect() as ws:
        await expect_close(ws, CloseCode.AUTH_REQUIRED)


async def test_token_in_query_string_is_ignored() -> None:
    async with running_server(auth_timeout_s=0.3) as server:
        token = server.token("alice")
        url = f"{server.ws_url}?token={token}&access_token={token}"
        protocols = [Subprotocol("chatgate.v1")]
        async with connect(url, subprotocols=protocols, open_timeout=RECV_TIMEOUT_S) as ws:
            reason = await expect_close(ws, CloseCode.AUTH_REQUIRED)
            assert token not in reason


# 4003 auth_invalid


def _header_and_claims(token: str) -> str:
    """The signing input only, so a reason quoting part of the token is caught too."""
    return token.rsplit(".", 1)[0]


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in claims.items() if key != name}


REJECTED_TOKENS: dict[str, Callable[[], str]] = {
    "bad_signature": lambda: sign_token(user_claims("alice"), key=OTHER_SECRET),
    "alg_none": lambda: unsigned_token(user_claims("alice")),
    "alg_not_pinned": lambda: sign_token(user_claims("alice"), algorithm="HS512"),
    "missing_exp": lambda: sign_token(_without(user_claims("alice"), "exp")),
    "missing_sub": lambda: sign_token(_without(user_claims("alice"), "sub")),
    "garbage": lambda: "not-a-jwt-at-all",
    "three_garbage_parts": lambda: "abc.def.ghi",
}


# HS512 signed with the server's own 39-byte secret: PyJWT warns the key is short for SHA-512.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", sorted(REJECTED_TOKENS))
async def test_rejected_token_in_header_closes_4003(case: str) -> None:
    token = REJECTED_TOKENS[case]()
    async with running_server() as server, server.connect(token) as ws:
        reason = await expect_close(ws, CloseCode.AUTH_INVALID)
        assert _header_and_claims(token) not in reason


@pytest.mark.parametrize("case", ["bad_signature", "alg_none", "missing_sub"])
async def test_rejected_token_in_auth_message_closes_4003(case: str) -> None:
    async with running_server() as server, server.connect() as ws:
        await send_json(ws, {"type": "auth", "token": REJECTED_TOKENS[case]()})
        await expect_close(ws, CloseCode.AUTH_INVALID)


async def test_rejected_token_in_subprotocol_closes_4003() -> None:
    token = sign_token(user_claims("alice"), key=OTHER_SECRET)
    async with (
        running_server() as server,
        server.connect(subprotocols=["chatgate.v1", f"bearer.{token}"]) as ws,
    ):
        assert ws.subprotocol == "chatgate.v1"
        await expect_close(ws, CloseCode.AUTH_INVALID)


ISSUER = "https://issuer.example"
AUDIENCE = "chatgate-tests"


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": ISSUER, "aud": AUDIENCE}, True),
        ({"iss": "https://evil.example", "aud": AUDIENCE}, False),
        ({"iss": ISSUER, "aud": "someone-else"}, False),
        ({"aud": AUDIENCE}, False),
        ({"iss": ISSUER}, False),
    ],
    ids=["right", "wrong_iss", "wrong_aud", "no_iss", "no_aud"],
)
async def test_issuer_and_audience_are_enforced_when_configured(
    claims: dict[str, str], accepted: bool
) -> None:
    token = sign_token(user_claims("alice") | claims)
    async with (
        running_server(jwt_issuer=ISSUER, jwt_audience=AUDIENCE) as server,
        server.connect(token) as ws,
    ):
        if accepted:
            hello = await recv_json(ws)
            assert hello["type"] == "connection_established"
            assert hello["payload"]["user_id"] == "alice"
        else:
            await expect_close(ws, CloseCode.AUTH_INVALID)


# 4004 auth_expired


async def test_expired_token_closes_4004() -> None:
    async with running_server() as server, server.connect(server.token("x", ttl_s=-10)) as ws:
        await expect_close(ws, CloseCode.AUTH_EXPIRED)


async def test_token_expiring_then_4004_without_refresh() -> None:
    async with (
        running_server(token_expiry_warning_s=1) as server,
        server.connect(server.token("alice", ttl_s=2)) as ws,
    ):
        frames = await frames_until_close(ws, CloseCode.AUTH_EXPIRED)
        assert [f["type"] for f in frames] == ["connection_established", "token_expiring"]
        assert 0 <= frames[1]["payload"]["expires_in_s"] <= 1.5


async def test_token_refresh_before_expiry_keeps_the_socket_open() -> None:
    async with running_server(token_expiry_warning_s=1) as server:
        short = server.token("alice", ttl_s=2)
        first_exp = int(time.time()) + 2
        async with server.connect(short) as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "connection_established"
            await send_json(
                ws, {"type": "token_refresh", "id": "r1", "token": server.token("alice")}
            )
            # A warning may already be on its way when the remaining life was near 1 s.
            frames = await recv_until(ws, "token_refreshed")
            assert {f["type"] for f in frames[:-1]} <= {"token_expiring"}
            assert frames[-1]["payload"]["expires_in_s"] > 3000
            # The clock must pass the first token's exp; there is nothing to await for that.
            await asyncio.sleep(max(0.0, first_exp - time.time()) + 0.5)
            await send_json(ws, {"type": "ping", "id": "after-exp"})
            pong = await recv_json(ws)
            assert pong["type"] == "pong", pong
            assert pong["payload"] == {"id": "after-exp"}


async def test_token_refresh_with_another_users_token_closes_4003() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "token_refresh", "token": server.token("mallory")})
        await expect_close(ws, CloseCode.AUTH_INVALID)


# 4006 origin_denied


async def test_foreign_origin_is_denied_by_default() -> None:
    async with (
        running_server() as server,
        server.connect(server.token("alice"), origin="https://evil.example") as ws,
    ):
        await expect_close(ws, CloseCode.ORIGIN_DENIED)


async def test_same_host_origin_is_allowed_by_default() -> None:
    async with running_server() as server:
        origin = f"http://127.0.0.1:{server.port}"
        async with server.connect(server.token("alice"), origin=origin) as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "connection_established"


async def test_listed_origin_is_allowed() -> None:
    allowed = "https://app.example,https://other.example"
    async with (
        running_server(allowed_origins=allowed) as server,
        server.connect(server.token("alice"), origin="https://app.example") as ws,
    ):
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"


async def test_unlisted_origin_is_denied_when_a_list_is_configured() -> None:
    async with (
        running_server(allowed_origins="https://app.example") as server,
        server.connect(server.token("alice"), origin="https://evil.example") as ws,
    ):
        await expect_close(ws, CloseCode.ORIGIN_DENIED)


async def test_no_origin_is_allowed() -> None:
    async with (
        running_server(allowed_origins="https://app.example") as server,
        server.connect(server.token("alice")) as ws,
    ):
        assert ws.request is not None
        assert "Origin" not in ws.request.headers
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"


# 4007 session_invalid


@pytest.mark.parametrize(
    "sub",
    ["", "a" * 256, "é" * 128, "bob\x00", "bob\nsmith", "e2e:mallory"],
    ids=["empty", "over_255_chars", "over_255_bytes", "nul", "newline", "e2e_prefix"],
)
async def test_unusable_sub_closes_4007(sub: str) -> None:
    async with running_server() as server, server.connect(sign_token(user_claims(sub))) as ws:
        await expect_close(ws, CloseCode.SESSION_INVALID)


async def test_sub_of_255_bytes_is_accepted() -> None:
    sub = "a" * 255
    async with running_server() as server, server.connect(server.token(sub)) as ws:
        hello = await recv_json(ws)
        assert hello["payload"]["user_id"] == sub


async def test_rejection_reason_never_quotes_the_secret() -> None:
    async with running_server() as server, server.connect(unsigned_token(user_claims("a"))) as ws:
        reason = await expect_close(ws, CloseCode.AUTH_INVALID)
        assert SECRET not in reason
