"""Verifying JWTs: pinned algorithms, pre-parsed keys, one verifier for every token.

Test tokens (header ``kid: "e2e"``) go through the same checks as every other
token, against the dedicated E2E key, and only where E2E mode is on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from chatgate.auth.hs_fast import HmacKeys, SplitToken, check_claims, decode_payload, split
from chatgate.closecodes import CloseCode
from chatgate.e2e import MAX_TEST_TOKEN_LIFETIME_S, TEST_KEY_ID, E2EPolicy
from chatgate.errors import AuthError, ConfigError
from chatgate.settings import HS_ALGORITHMS, Settings

_MAX_TOKEN_BYTES = 8192


@dataclass(slots=True)
class VerifiedToken:
    """The claims of a token whose signature and times were checked (a value, never changed)."""

    subject: str
    expires_at: float
    issued_at: float | None
    is_test: bool
    claims: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Keys:
    public_key: Any | None
    jwks: jwt.PyJWKClient | None


def _invalid(detail: str) -> AuthError:
    return AuthError(CloseCode.AUTH_INVALID, detail)


def _translate(exc: jwt.PyJWTError) -> AuthError:
    """Map a PyJWT failure to the close code and a reason that never quotes the token."""
    detail = "invalid token"
    code = CloseCode.AUTH_INVALID
    if isinstance(exc, jwt.ExpiredSignatureError):
        code, detail = CloseCode.AUTH_EXPIRED, "token expired"
    elif isinstance(exc, jwt.MissingRequiredClaimError):
        detail = f"missing claim {exc.claim}"
    elif isinstance(exc, jwt.InvalidAudienceError):
        detail = "wrong audience"
    elif isinstance(exc, jwt.InvalidIssuerError):
        detail = "wrong issuer"
    elif isinstance(exc, jwt.InvalidSignatureError):
        detail = "bad signature"
    elif isinstance(exc, jwt.ImmatureSignatureError):
        detail = "token not yet valid"
    elif isinstance(exc, jwt.InvalidAlgorithmError):
        detail = "algorithm not allowed"
    elif isinstance(exc, jwt.PyJWKClientError):
        detail = "no matching signing key"
    elif isinstance(exc, jwt.DecodeError):
        detail = "malformed token"
    return AuthError(code, detail)


class TokenVerifier:
    """Verifies user tokens and, where E2E mode is on, test tokens.

    Raises :class:`~chatgate.errors.AuthError` with the close code of the
    wire contract for every rejection.
    """

    def __init__(self, settings: Settings, e2e: E2EPolicy) -> None:
        self._algorithms = settings.algorithms
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._e2e = e2e
        secret = settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
        public_key = None
        if settings.jwt_public_key is not None:
            try:
                public_key = load_pem_public_key(
                    settings.jwt_public_key.get_secret_value().encode()
                )
            except ValueError:
                raise ConfigError("CHATGATE_JWT_PUBLIC_KEY", "not a PEM public key") from None
        jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=int(settings.jwks_cache_s))
            if settings.jwks_url
            else None
        )
        self._keys = _Keys(public_key, jwks)
        self._hmac = HmacKeys(secret, self._algorithms) if secret is not None else None
        e2e_key = settings.e2e_oauth_simulation_key
        self._e2e_key = e2e_key.get_secret_value().encode() if e2e_key and e2e.enabled else None

    async def verify_async(self, token: str) -> VerifiedToken:
        """Verify ``token``; a JWKS fetch runs in a thread so it never blocks the loop."""
        if self._keys.jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` and return its claims.

        Raises:
            AuthError: 4003 (format, signature, algorithm, issuer, audience, claims),
                4004 (expired) or 4005 (a test token where E2E mode is off).
        """
        if not token or len(token) > _MAX_TOKEN_BYTES:
            raise _invalid("malformed token")
        parts = split(token)
        alg = parts.header.get("alg")
        if parts.header.get("kid") == TEST_KEY_ID:
            return self._verify_test(token, alg)
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _invalid("algorithm not allowed")
        if self._hmac is not None and alg in self._hmac:
            return self._verify_hmac(parts, alg)
        key = self._key_for(token, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWKClientConnectionError:
            raise AuthError(CloseCode.TRY_AGAIN_LATER, "signing keys unavailable") from None
        except jwt.PyJWTError as exc:
            raise _translate(exc) from None
        if "e2e" in claims:
            raise _invalid("e2e claim on a token that is not a test token")
        return _verified(claims, is_test=False)

    def _verify_hmac(self, parts: SplitToken, alg: str) -> VerifiedToken:
        assert self._hmac is not None  # noqa: S101 - checked by the caller
        # Payload before signature, as PyJWT does: a garbled token is
        # "malformed" whichever key signed it.
        claims = decode_payload(parts)
        if not self._hmac.signature_valid(alg, parts):
            raise _invalid("bad signature")
        check_claims(claims, now=time.time(), issuer=self._issuer, audience=self._audience)
        if "e2e" in claims:
            raise _invalid("e2e claim on a token that is not a test token")
        return _verified(claims, is_test=False)

    def _key_for(self, token: str, alg: str) -> Any:
        if alg in HS_ALGORITHMS:
            # With a secret, HS* tokens never get here (see _verify_hmac); without
            # one, an HS* token must not be checked against a public key.
            raise _invalid("algorithm not allowed")
        if self._keys.public_key is not None:
            return self._keys.public_key
        if self._keys.jwks is not None:
            try:
                return self._keys.jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError:
                raise AuthError(CloseCode.TRY_AGAIN_LATER, "signing keys unavailable") from None
            except jwt.PyJWTError as exc:
                raise _translate(exc) from None
        raise _invalid("algorithm not allowed")

    def _verify_test(self, token: str, alg: object) -> VerifiedToken:
        if not self._e2e.enabled:
            raise AuthError(CloseCode.E2E_NOT_ENABLED, "test tokens are not accepted here")
        if self._e2e_key is None:
            raise _invalid("e2e key not configured")
        if alg != "HS256":
            raise _invalid("test tokens must use HS256")
        try:
            claims = jwt.decode(
                token,
                key=self._e2e_key,
                algorithms=["HS256"],
                options={"require": ["exp", "iat", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise _translate(exc) from None
        if claims.get("e2e") is not True:
            raise _invalid("test token without e2e claim")
        lifetime = claims["exp"] - claims["iat"]
        if not isinstance(lifetime, int | float) or lifetime > MAX_TEST_TOKEN_LIFETIME_S:
            raise _invalid(f"test token lifetime over {MAX_TEST_TOKEN_LIFETIME_S}s")
        return _verified(claims, is_test=True)


def _verified(claims: dict[str, Any], *, is_test: bool) -> VerifiedToken:
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise _invalid("sub must be a string")
    iat = claims.get("iat")
    return VerifiedToken(
        subject=subject,
        expires_at=float(claims["exp"]),
        issued_at=float(iat) if isinstance(iat, int | float) else None,
        is_test=is_test,
        claims=claims,
    )
