"""The cache of verified tokens: a hit only for the same token, still valid at the time asked."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from chatgate.auth.minting import mint_token
from chatgate.auth.token_cache import VerifiedTokens
from chatgate.auth.tokens import TokenVerifier
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

SECRET = "main-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef-0"
T0 = 1_800_000_000.0


def cache(capacity: int = 3, max_age_s: float = 300.0) -> VerifiedTokens[str]:
    return VerifiedTokens[str](capacity, max_age_s)


def test_a_hit_until_exp_and_not_at_exp() -> None:
    tokens = cache()
    tokens.put("t", "alice", expires_at=int(T0) + 60, now=T0)
    assert tokens.get("t", T0) == "alice"
    assert tokens.get("t", T0 + 59.999) == "alice"
    # PyJWT calls a token expired once exp <= now.
    assert tokens.get("t", T0 + 60) is None
    assert len(tokens) == 0


def test_only_the_exact_token_hits() -> None:
    tokens = cache()
    tokens.put("abc", "alice", expires_at=int(T0) + 60, now=T0)
    assert tokens.get("abd", T0) is None
    assert tokens.get("abc ", T0) is None
    assert tokens.get("ABC", T0) is None


def test_an_entry_lives_no_longer_than_max_age() -> None:
    tokens = cache(max_age_s=10)
    tokens.put("t", "alice", expires_at=int(T0) + 3600, now=T0)
    assert tokens.get("t", T0 + 9.9) == "alice"
    assert tokens.get("t", T0 + 10) is None


def test_a_clock_stepped_back_misses() -> None:
    tokens = cache()
    tokens.put("t", "alice", expires_at=int(T0) + 60, now=T0)
    assert tokens.get("t", T0 - 1) is None


def test_the_least_recently_used_goes_first() -> None:
    tokens = cache(capacity=2)
    tokens.put("a", "A", expires_at=int(T0) + 60, now=T0)
    tokens.put("b", "B", expires_at=int(T0) + 60, now=T0)
    assert tokens.get("a", T0) == "A"
    tokens.put("c", "C", expires_at=int(T0) + 60, now=T0)
    assert (tokens.get("a", T0), tokens.get("b", T0), tokens.get("c", T0)) == ("A", None, "C")
    assert len(tokens) == 2


@pytest.mark.parametrize(("capacity", "max_age_s"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_bad_bounds(capacity: int, max_age_s: float) -> None:
    with pytest.raises(ValueError, match="capacity"):
        VerifiedTokens[Any](capacity, max_age_s)


def verifier() -> TokenVerifier:
    settings = load_settings(jwt_secret=SECRET, environment="production")
    return TokenVerifier(settings, e2e_policy_for(settings))


def test_the_verifier_answers_a_token_seen_before_from_its_cache() -> None:
    checked = verifier()
    token = mint_token(SECRET, "alice")
    first = checked.verify(token)
    assert checked.verify(token) is first


def test_a_refused_token_is_refused_again() -> None:
    checked = verifier()
    token = mint_token(SECRET, "alice")[:-2] + "AA"
    for _ in range(2):
        with pytest.raises(AuthError) as caught:
            checked.verify(token)
        assert caught.value.code == CloseCode.AUTH_INVALID


def test_a_cached_token_expires() -> None:
    checked = verifier()
    expires = int(time.time()) + 2
    token = jwt.encode({"sub": "alice", "exp": expires}, SECRET, algorithm="HS256")
    assert checked.verify(token).subject == "alice"
    # Wait for the clock to pass exp (a condition, not a duration under test).
    deadline = time.monotonic() + 10
    while time.time() < expires and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(AuthError) as caught:
        checked.verify(token)
    assert (caught.value.code, caught.value.detail) == (CloseCode.AUTH_EXPIRED, "token expired")
