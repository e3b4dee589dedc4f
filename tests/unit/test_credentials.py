"""Finding the credential on an upgrade request (docs/protocol.md section 2)."""

from __future__ import annotations

import pytest

from chatgate.auth.credentials import PROTOCOL_NAME, CredentialSource, read_handshake
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXRleHQ"


def test_protocol_name() -> None:
    assert PROTOCOL_NAME == "chatgate.v1"


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN}  "],
)
def test_authorization_header(authorization: str) -> None:
    handshake = read_handshake(authorization, [PROTOCOL_NAME])
    assert handshake.token == TOKEN
    assert handshake.source is CredentialSource.HEADER
    assert handshake.selected_subprotocol == PROTOCOL_NAME


def test_subprotocol() -> None:
    handshake = read_handshake(None, [PROTOCOL_NAME, f"bearer.{TOKEN}"])
    assert handshake.token == TOKEN
    assert handshake.source is CredentialSource.SUBPROTOCOL
    assert handshake.selected_subprotocol == PROTOCOL_NAME


def test_no_credential_waits_for_an_auth_message() -> None:
    handshake = read_handshake(None, [PROTOCOL_NAME])
    assert handshake.token is None
    assert handshake.source is None
    assert handshake.selected_subprotocol == PROTOCOL_NAME


@pytest.mark.parametrize(
    ("subprotocols", "selected"),
    [
        ([], None),
        ([f"bearer.{TOKEN}"], None),
        (["chatgate.v2"], None),
        (["CHATGATE.V1"], None),
        (["graphql-ws", PROTOCOL_NAME], PROTOCOL_NAME),
        ([f"bearer.{TOKEN}", PROTOCOL_NAME], PROTOCOL_NAME),
    ],
    ids=["none", "bearer-only", "other-version", "wrong-case", "second", "after-bearer"],
)
def test_subprotocol_selected_only_when_offered(
    subprotocols: list[str], selected: str | None
) -> None:
    handshake = read_handshake(None, subprotocols)
    assert handshake.selected_subprotocol == selected
    assert handshake.selected_subprotocol is None or not handshake.selected_subprotocol.startswith(
        "bearer."
    )


def rejected(authorization: str | None, subprotocols: list[str]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        read_handshake(authorization, subprotocols)
    return caught.value


def test_header_and_subprotocol_together_are_ambiguous() -> None:
    exc = rejected(f"Bearer {TOKEN}", [PROTOCOL_NAME, f"bearer.{TOKEN}"])
    assert exc.code == CloseCode.AUTH_INVALID
    assert exc.reason == "auth_invalid: more than one credential presented"


def test_two_bearer_subprotocols_are_ambiguous() -> None:
    exc = rejected(None, [PROTOCOL_NAME, f"bearer.{TOKEN}", "bearer.other.token.here"])
    assert exc.code == CloseCode.AUTH_INVALID
    assert exc.reason == "auth_invalid: more than one credential presented"


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        TOKEN,
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        f"Bearer:{TOKEN}",
    ],
    ids=[
        "empty",
        "scheme-only",
        "scheme-space",
        "scheme-spaces",
        "no-scheme",
        "basic",
        "token",
        "colon",
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    exc = rejected(authorization, [PROTOCOL_NAME])
    assert exc.code == CloseCode.AUTH_INVALID
    assert exc.reason == "auth_invalid: Authorization must be 'Bearer <jwt>'"


def test_errors_never_quote_the_token() -> None:
    for exc in (
        rejected(f"Basic {TOKEN}", []),
        rejected(f"Bearer {TOKEN}", [f"bearer.{TOKEN}"]),
        rejected(None, [f"bearer.{TOKEN}", f"bearer.{TOKEN}x"]),
    ):
        assert TOKEN not in str(exc)
        assert TOKEN not in exc.reason
        assert TOKEN not in repr(exc)


def test_handshake_repr_hides_the_token() -> None:
    assert TOKEN not in repr(read_handshake(f"Bearer {TOKEN}", []))
    assert TOKEN not in repr(read_handshake(None, [f"bearer.{TOKEN}"]))
