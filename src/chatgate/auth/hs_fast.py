"""A shortcut for the usual HS* token: it may only accept, and only what PyJWT accepts.

PyJWT spends about 340,000 instructions on an HS256 token (``bench/tokens.py``),
a third of a whole handshake. Most tokens have one shape: a header of ``alg``
and ``typ: JWT`` as every library writes it, canonical base64url, integer times.
For exactly those, :meth:`HmacShortcut.claims` returns what PyJWT would return,
and for any other token it returns None and the verifier asks PyJWT. It never
refuses: every refusal, with its reason, is PyJWT's. So the one thing to keep
true is that whatever it accepts, PyJWT configured the same accepts with the
same claims, and each step below is a subset of PyJWT's rule:

- the header segment is one of a few precomputed encodings of ``{"alg", "typ"}``
  with a pinned HS* algorithm: no ``kid``, ``crit`` or ``b64`` to judge;
- the signature segment equals the unpadded base64url of the HMAC (compared in
  constant time), so it is canonical and right;
- the payload re-encodes to exactly its segment (canonical: alphabet, no
  padding, no stray bits) and ``json.loads``, the parser PyJWT uses, makes a dict;
- ``exp``, ``iat`` and ``nbf`` are plain integers that PyJWT's ``int()`` leaves
  alone and the clock allows; ``sub`` (and ``jti`` when present) are strings;
  ``iss`` and ``aud`` match when configured.

``tests/unit/test_token_differential.py`` feeds this and PyJWT the same generated tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

_DIGESTS: dict[str, Callable[..., Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _header_segments(alg: str) -> list[str]:
    """The encodings of ``{"alg", "typ": "JWT"}`` issuers write: key order, spacing, no typ."""
    headers = [{"alg": alg, "typ": "JWT"}, {"typ": "JWT", "alg": alg}, {"alg": alg}]
    return [
        _segment(json.dumps(header, separators=separators).encode())
        for header in headers
        for separators in ((",", ":"), (", ", ": "))
    ]


def _plain_int(value: object) -> bool:
    # bool is an int subclass and int() would turn it into 0 or 1: PyJWT decides those.
    return type(value) is int


def _canonical_json_object(segment: str) -> dict[str, Any] | None:
    """The JSON object in a canonical base64url segment, parsed as PyJWT parses it."""
    if len(segment) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        # Equal only when the segment holds nothing but the alphabet, no
        # padding and no stray bits: PyJWT's own test.
        if _segment(data) != segment:
            return None
        value = json.loads(data)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class HmacShortcut:
    """Keyed HMACs for the pinned HS* algorithms, and the claims of tokens PyJWT would accept."""

    def __init__(
        self,
        secret: bytes,
        algorithms: list[str],
        *,
        issuer: str | None,
        audience: str | None,
        max_expiry: int,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._max_expiry = max_expiry
        self._macs: dict[str, Any] = {}
        for alg in algorithms:
            mac = hmac.new(secret, digestmod=_DIGESTS[alg])
            for segment in _header_segments(alg):
                self._macs[segment] = mac

    def claims(self, token: str, now: float) -> dict[str, Any] | None:
        """The claims of ``token`` if it has the usual shape and PyJWT accepts it, else None."""
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():  # noqa: PLR2004 - header.payload.signature
            return None
        header_b64, payload_b64, signature_b64 = parts
        keyed = self._macs.get(header_b64)
        if keyed is None:
            return None
        mac = keyed.copy()
        mac.update(f"{header_b64}.{payload_b64}".encode())
        if not hmac.compare_digest(_segment(mac.digest()), signature_b64):
            return None
        claims = _canonical_json_object(payload_b64)
        if claims is None or not self._claims_pass(claims, now):
            return None
        return claims

    def _claims_pass(self, claims: dict[str, Any], now: float) -> bool:
        exp = claims.get("exp")
        if type(exp) is not int or not now < exp <= self._max_expiry:
            return False
        for name in ("iat", "nbf"):
            if name in claims and not (_plain_int(claims[name]) and claims[name] <= now):
                return False
        if not isinstance(claims.get("sub"), str):
            return False
        if "jti" in claims and not isinstance(claims["jti"], str):
            return False
        if self._issuer is not None and claims.get("iss") != self._issuer:
            return False
        return self._audience is None or self._audience_matches(claims.get("aud"))

    def _audience_matches(self, aud: object) -> bool:
        if isinstance(aud, str):
            # PyJWT takes an empty aud for a missing one.
            return aud != "" and aud == self._audience
        return (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud) and self._audience in aud
        )
