"""Minting tokens for local use and test suites (``chatgate token`` and the dev banner)."""

from __future__ import annotations

import time
import uuid

import jwt

from chatgate.e2e import MAX_TEST_TOKEN_LIFETIME_S, TEST_KEY_ID


def mint_token(
    secret: str,
    sub: str,
    *,
    ttl_s: int = 3600,
    audience: str | None = None,
    issuer: str | None = None,
    algorithm: str = "HS256",
    now: float | None = None,
) -> str:
    """Return a user token signed with ``secret``; a negative ``ttl_s`` gives an expired one."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": sub, "iat": issued, "exp": issued + ttl_s}
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)


def mint_test_token(
    e2e_key: str,
    sub: str,
    *,
    ttl_s: int = 900,
    now: float | None = None,
) -> str:
    """Return an E2E test token (``kid: e2e``, ``e2e: true``) signed with the E2E key.

    Raises:
        ValueError: ``ttl_s`` is longer than the one hour a test token may live.
    """
    if ttl_s > MAX_TEST_TOKEN_LIFETIME_S:
        raise ValueError(f"a test token lives at most {MAX_TEST_TOKEN_LIFETIME_S} s")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": sub,
        "iat": issued,
        "exp": issued + ttl_s,
        "e2e": True,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, e2e_key, algorithm="HS256", headers={"kid": TEST_KEY_ID})
