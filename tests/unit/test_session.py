"""Sessions: the user id is the verified sub, test users live under ``e2e:``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.auth.tokens import TokenVerifier, VerifiedToken
from chatgate.chat.session import MAX_SUBJECT_BYTES, build_session, user_id_for
from chatgate.closecodes import CloseCode
from chatgate.errors import SessionInvalid
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

SECRET = "main-secret-0123456789abcdef-0123456789"
E2E_KEY = "e2e-key-0123456789abcdef-0123456789-test"
CONTEXT: dict[str, Any] = {"is_e2e_testing": True}


def token(subject: str, *, is_test: bool = False) -> VerifiedToken:
    now = time.time()
    return VerifiedToken(
        subject=subject,
        expires_at=now + 600,
        issued_at=now,
        is_test=is_test,
        claims={"sub": subject},
    )


def invalid(subject: str, *, is_test: bool = False) -> SessionInvalid:
    with pytest.raises(SessionInvalid) as caught:
        user_id_for(token(subject, is_test=is_test))
    exc = caught.value
    assert exc.code == CloseCode.SESSION_INVALID
    assert exc.reason.startswith("session_invalid: ")
    return exc


@pytest.mark.parametrize(
    "subject",
    ["alice", "user|123", "auth0|5f3c", "ünïcødé", "a", "x" * MAX_SUBJECT_BYTES, "e2e", "E2E:x"],
)
def test_user_id_is_the_sub(subject: str) -> None:
    assert user_id_for(token(subject)) == subject


@pytest.mark.parametrize("subject", ["bot", "alice", "e2e:bot"])
def test_test_users_are_prefixed(subject: str) -> None:
    assert user_id_for(token(subject, is_test=True)) == "e2e:" + subject


@pytest.mark.parametrize("is_test", [False, True])
def test_empty_sub(is_test: bool) -> None:
    assert invalid("", is_test=is_test).detail == "empty sub"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("x" * 255, True),
        ("x" * 256, False),
        ("é" * 127, True),  # 254 bytes
        ("é" * 128, False),  # 256 bytes in 128 characters
        ("€" * 85, True),  # 255 bytes
        ("€" * 86, False),  # 258 bytes in 86 characters
        ("😀" * 63 + "xxx", True),  # 255 bytes
        ("😀" * 64, False),  # 256 bytes in 64 characters
    ],
    ids=[
        "255-ascii",
        "256-ascii",
        "254-2byte",
        "256-2byte",
        "255-3byte",
        "258-3byte",
        "255-4byte",
        "256-4byte",
    ],
)
def test_sub_length_is_counted_in_bytes(subject: str, expected: bool) -> None:
    if expected:
        assert user_id_for(token(subject)) == subject
    else:
        exc = invalid(subject)
        assert exc.detail == "sub longer than 255 bytes"
        assert subject not in str(exc)


def test_overlong_test_sub() -> None:
    assert invalid("é" * 128, is_test=True).detail == "sub longer than 255 bytes"


@pytest.mark.parametrize(
    "subject",
    ["a\x00b", "alice\n", "\ralice", "a\tb", "a\x1bb", "a\x7fb", "a\x85b", "a\x9fb"],
    ids=["nul", "newline", "cr", "tab", "esc", "del", "nel", "c1"],
)
@pytest.mark.parametrize("is_test", [False, True])
def test_control_characters(subject: str, is_test: bool) -> None:
    assert invalid(subject, is_test=is_test).detail == "sub holds control characters"


@pytest.mark.parametrize("subject", ["e2e:alice", "e2e:", "e2e:e2e:bot"])
def test_test_namespace_on_a_user_token(subject: str) -> None:
    exc = invalid(subject)
    assert exc.detail == "sub starts with 'e2e:' on a non-test token"


def test_build_session_for_a_user_token() -> None:
    verified = token("alice")
    session = build_session(verified, "conn-1", CONTEXT)
    assert session.user_id == "alice"
    assert session.connection_id == "conn-1"
    assert session.expires_at == verified.expires_at
    assert session.is_test is False
    # A real user's session never carries the E2E context.
    assert session.e2e_context is None


def test_build_session_for_a_test_token() -> None:
    session = build_session(token("bot", is_test=True), "conn-2", CONTEXT)
    assert session.user_id == "e2e:bot"
    assert session.is_test is True
    assert session.e2e_context == CONTEXT


def test_build_session_refuses_invalid_claims() -> None:
    with pytest.raises(SessionInvalid):
        build_session(token("e2e:mallory"), "conn-3", None)


def test_from_verified_tokens_end_to_end() -> None:
    settings = load_settings(
        jwt_secret=SECRET, e2e_oauth_simulation_key=E2E_KEY, environment="staging"
    )
    verifier = TokenVerifier(settings, e2e_policy_for(settings))
    assert user_id_for(verifier.verify(mint_token(SECRET, "alice"))) == "alice"
    assert user_id_for(verifier.verify(mint_test_token(E2E_KEY, "alice"))) == "e2e:alice"
    with pytest.raises(SessionInvalid):
        user_id_for(verifier.verify(mint_token(SECRET, "e2e:alice")))


def test_a_subject_that_is_not_unicode_is_session_invalid() -> None:
    token = VerifiedToken("bad-\udc80", expires_at=4e9, issued_at=None, is_test=False, claims={})
    with pytest.raises(SessionInvalid) as refused:
        user_id_for(token)
    assert refused.value.code == 4007
