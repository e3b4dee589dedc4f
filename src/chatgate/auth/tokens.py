"""Verifying JWTs: what PyJWT accepts, refused for PyJWT's reasons, and a few more.

The verifier answers as ``jwt.decode_complete`` does with the algorithms
pinned by configuration, ``exp`` and ``sub`` required, ``iss`` and ``aud`` when
they are configured, no leeway; whatever a later PyJWT release refuses is
refused here too, since every refusal comes from PyJWT itself. On top,
stricter than PyJWT, each for a reason:

- at most 8 KiB and ASCII only: bounded work, and PyJWT raises
  ``UnicodeEncodeError`` for a string it cannot encode;
- ``typ``, when present, ``JWT`` or ``at+jwt`` (RFC 8725 section 3.11): a logout
  or security event token from the same issuer is not a login;
- an ``e2e`` claim only on a test token;
- ``exp`` no later than the end of year 9999, the last instant a date can hold
  (the server tells the client when its token expires);
- a ``sub`` that is valid Unicode (4007), since the session encodes it.

Test tokens (header ``kid: "e2e"``) go through the same checks, against the
dedicated E2E key, only where E2E mode is on, and must also carry ``e2e: true``
and ``iat`` with ``exp - iat`` at most an hour.

Measured with ``bench/tokens.py`` (callgrind, instructions
per HS256 verification; a handshake is about 1,000,000): PyJWT 343,000; the
hand-written path this replaced 68,000, but it had drifted from PyJWT in nine
ways; one that really matches PyJWT's refusals 107,000 (prototyped in the
bench), and it would have to be kept matching by hand. So the verifier keeps
the cost without the drift: ``hs_fast.HmacShortcut`` may only *accept*, and
only the usual shape of HS* token, for which PyJWT's answer is plain (107,000
on a new token); anything else, every refusal included, is PyJWT's (about
434,000 with the header read to choose the key). A token seen before is
answered from :class:`~chatgate.auth.token_cache.VerifiedTokens` (5,200):
reconnects, page reloads and history API requests, and RS*/ES* tokens, which
the shortcut never takes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.types import Options

from chatgate.auth.hs_fast import HmacShortcut
from chatgate.auth.token_cache import VerifiedTokens
from chatgate.closecodes import CloseCode
from chatgate.e2e import MAX_TEST_TOKEN_LIFETIME_S, TEST_KEY_ID, E2EPolicy
from chatgate.errors import AuthError, ConfigError, SessionInvalid
from chatgate.settings import HS_ALGORITHMS, Settings

MAX_TOKEN_CHARS = 8192
MAX_EXPIRY = 253_402_300_799
"""9999-12-31T23:59:59Z, the last second ``datetime`` can represent."""

CACHE_CAPACITY = 4096
"""Verified tokens kept; at most 8 KiB each, usually under one."""

JWKS_TIMEOUT_S = 5.0
"""PyJWKClient waits 30 s by default; a handshake should not hang that long on the issuer."""

_ACCEPTED_TYPES = frozenset({"jwt", "at+jwt"})
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_USER_CLAIMS = ["exp", "sub"]
_TEST_CLAIMS = ["exp", "iat", "sub"]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of a token whose signature and times were checked (a value, never changed).

    ``expires_at`` and ``issued_at`` are the claims as PyJWT compares them, ``int()`` of each.
    """

    subject: str
    expires_at: float
    issued_at: float | None
    is_test: bool
    claims: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Route:
    """A key and the algorithms it may verify."""

    key: Any = field(repr=False)
    algorithms: list[str]


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


def unverified_header(token: str) -> dict[str, Any] | None:
    """The header exactly as PyJWT will read it, or None where PyJWT will refuse the token.

    Only to choose the key: PyJWT then checks the whole token, header included.
    Base64url as PyJWT takes it: the alphabet, up to two ``=`` on a segment whose
    length is a multiple of four, and no bits set past the data.
    """
    if token.count(".") < 2:  # noqa: PLR2004 - header.payload.signature
        return None
    segment = token[: token.index(".")]
    stripped = segment.rstrip("=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1:  # noqa: PLR2004
        return None
    if _BASE64URL.fullmatch(stripped) is None:
        return None
    try:
        data = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
        header = json.loads(data)
    except (binascii.Error, ValueError, RecursionError):
        return None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != stripped.encode():
        return None
    return header if isinstance(header, dict) else None


def _check_type(header: dict[str, Any]) -> None:
    if "typ" not in header:
        return
    typ = header["typ"]
    # RFC 7515 4.1.9: a media type, case-insensitive, "application/" may be left out.
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") not in _ACCEPTED_TYPES:
        raise _invalid("token type not accepted")


def _decode(
    token: str,
    route: _Route,
    options: Options,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    try:
        return jwt.decode_complete(
            token,
            key=route.key,
            algorithms=route.algorithms,
            options=options,
            issuer=issuer,
            audience=audience,
        )
    except jwt.PyJWTError as exc:
        raise _translate(exc) from None


class TokenVerifier:
    """Verifies user tokens and, where E2E mode is on, test tokens.

    Raises :class:`~chatgate.errors.AuthError` with the close code of the wire
    contract for every rejection, and :class:`~chatgate.errors.SessionInvalid`
    for a subject that is not valid Unicode. Not thread-safe beyond
    :meth:`verify_async`, which keeps the cache on the event loop's thread.
    """

    def __init__(self, settings: Settings, e2e: E2EPolicy) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._e2e = e2e
        self._options: Options = {"require": _USER_CLAIMS, "verify_aud": self._audience is not None}
        hs = [a for a in settings.algorithms if a in HS_ALGORITHMS]
        asymmetric = [a for a in settings.algorithms if a not in HS_ALGORITHMS]
        secret = settings.jwt_secret
        self._hmac = _Route(_hmac_secret(settings), hs) if secret and hs else None
        self._shortcut = (
            HmacShortcut(
                self._hmac.key,
                hs,
                issuer=self._issuer,
                audience=self._audience,
                max_expiry=MAX_EXPIRY,
            )
            if self._hmac is not None
            else None
        )
        public_key = _public_key(settings)
        self._public = _Route(public_key, asymmetric) if public_key and asymmetric else None
        self._jwks_algorithms = asymmetric
        self._jwks = (
            jwt.PyJWKClient(
                settings.jwks_url,
                cache_keys=True,
                lifespan=settings.jwks_cache_s,
                timeout=JWKS_TIMEOUT_S,
            )
            if settings.jwks_url and asymmetric
            else None
        )
        e2e_key = settings.e2e_oauth_simulation_key
        self._test = (
            _Route(e2e_key.get_secret_value().encode(), ["HS256"])
            if e2e_key and e2e.enabled
            else None
        )
        # A JWKS key is trusted for jwks_cache_s; a verified token no longer than that.
        self._cache = VerifiedTokens[VerifiedToken](CACHE_CAPACITY, settings.jwks_cache_s)

    async def verify_async(self, token: str) -> VerifiedToken:
        """Verify ``token``; a JWKS fetch runs in a thread so it never blocks the loop."""
        if self._jwks is None:
            return self.verify(token)
        now = time.time()
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        verified = await asyncio.to_thread(self._verify_uncached, token)
        self._cache.put(token, verified, expires_at=int(verified.expires_at), now=now)
        return verified

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` and return its claims.

        Raises:
            AuthError: 4003 (format, signature, algorithm, type, issuer, audience,
                claims), 4004 (expired), 4005 (a test token where E2E mode is off)
                or 1013 (the JWKS endpoint does not answer).
            SessionInvalid: 4007, the subject is not valid Unicode.
        """
        now = time.time()
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        verified = self._verify_uncached(token)
        self._cache.put(token, verified, expires_at=int(verified.expires_at), now=now)
        return verified

    def _verify_uncached(self, token: str) -> VerifiedToken:
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise _invalid("malformed token")
        if self._shortcut is not None:
            claims = self._shortcut.claims(token, time.time())
            if claims is not None:
                return _user_token(claims)
        header = unverified_header(token)
        alg = None if header is None else header.get("alg")
        if header is not None and header.get("kid") == TEST_KEY_ID:
            return self._verify_test(token, alg)
        decoded = _decode(
            token,
            self._route(token, alg),
            self._options,
            issuer=self._issuer,
            audience=self._audience,
        )
        _check_type(decoded["header"])
        return _user_token(decoded["payload"])

    def _route(self, token: str, alg: object) -> _Route:
        """The key for ``alg``: an HS* token never meets a public key, nor the reverse."""
        hs = isinstance(alg, str) and alg in HS_ALGORITHMS
        if hs and self._hmac is not None:
            return self._hmac
        if not hs and self._public is not None:
            return self._public
        if not hs and self._jwks is not None:
            return self._jwks_route(token, alg)
        # No key for this family: PyJWT refuses the algorithm, after the format.
        route = self._hmac or self._public
        if route is None:
            raise _invalid("algorithm not allowed")
        return route

    def _jwks_route(self, token: str, alg: object) -> _Route:
        assert self._jwks is not None  # noqa: S101 - checked by the caller
        # Never make the issuer's endpoint answer for a token that would be refused.
        if alg not in self._jwks_algorithms:
            raise _invalid("algorithm not allowed")
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise AuthError(CloseCode.TRY_AGAIN_LATER, "signing keys unavailable") from None
        except jwt.PyJWTError as exc:
            raise _translate(exc) from None
        except (OSError, ValueError):
            # PyJWKClient lets a connection reset or a body that is not JSON through.
            raise AuthError(CloseCode.TRY_AGAIN_LATER, "signing keys unavailable") from None
        return _Route(key, self._jwks_algorithms)

    def _verify_test(self, token: str, alg: object) -> VerifiedToken:
        if not self._e2e.enabled:
            raise AuthError(CloseCode.E2E_NOT_ENABLED, "test tokens are not accepted here")
        if self._test is None:
            raise _invalid("e2e key not configured")
        if alg != "HS256":
            raise _invalid("test tokens must use HS256")
        options: Options = {"require": _TEST_CLAIMS, "verify_aud": False}
        decoded = _decode(token, self._test, options)
        _check_type(decoded["header"])
        claims: dict[str, Any] = decoded["payload"]
        if claims.get("e2e") is not True:
            raise _invalid("test token without e2e claim")
        # PyJWT has checked that int() takes both, the way it compares them.
        if int(claims["exp"]) - int(claims["iat"]) > MAX_TEST_TOKEN_LIFETIME_S:
            raise _invalid(f"test token lifetime over {MAX_TEST_TOKEN_LIFETIME_S}s")
        return _verified(claims, is_test=True)


def _hmac_secret(settings: Settings) -> bytes:
    assert settings.jwt_secret is not None  # noqa: S101 - checked by the caller
    secret = settings.jwt_secret.get_secret_value().encode()
    try:
        # PyJWT refuses a PEM, SSH or JWK-shaped secret on every token; say so at boot.
        jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise ConfigError("CHATGATE_JWT_SECRET", "is a public key or a JWK, not a secret") from None
    return secret


def _public_key(settings: Settings) -> Any:
    if settings.jwt_public_key is None:
        return None
    try:
        return load_pem_public_key(settings.jwt_public_key.get_secret_value().encode())
    except ValueError:
        raise ConfigError("CHATGATE_JWT_PUBLIC_KEY", "not a PEM public key") from None


def _user_token(claims: dict[str, Any]) -> VerifiedToken:
    if "e2e" in claims:
        raise _invalid("e2e claim on a token that is not a test token")
    return _verified(claims, is_test=False)


def _verified(claims: dict[str, Any], *, is_test: bool) -> VerifiedToken:
    """The value of a token PyJWT accepted, after the rules PyJWT does not have."""
    # PyJWT has checked that int() takes exp and iat, and that sub is a string.
    expires = int(claims["exp"])
    if expires > MAX_EXPIRY:
        raise _invalid("exp after year 9999")
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise _invalid("sub must be a string")
    try:
        subject.encode()
    except UnicodeEncodeError:
        raise SessionInvalid("sub is not valid Unicode") from None
    return VerifiedToken(
        subject=subject,
        expires_at=float(expires),
        issued_at=float(int(claims["iat"])) if "iat" in claims else None,
        is_test=is_test,
        claims=claims,
    )
