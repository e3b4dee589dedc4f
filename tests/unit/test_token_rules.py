"""The verifier's rules one by one: where it must match PyJWT, and where it is stricter.

Each case here is a token a hand-written HS256 path once accepted or crashed
on: non-canonical base64url, ``crit``/``b64``/``kid`` headers, ``iat``/``nbf``/``exp``
of the wrong kind, an expiry no date can hold, a subject that is not Unicode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatgate.auth import tokens
from chatgate.auth.tokens import MAX_EXPIRY, TokenVerifier
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError, ConfigError, SessionInvalid
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

SECRET = "main-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef-0"
E2E_KEY = "e2e-key-0123456789abcdef-0123456789-test"


def verifier(**overrides: Any) -> TokenVerifier:
    values: dict[str, Any] = {"jwt_secret": SECRET, "environment": "production", **overrides}
    settings = load_settings(**values)
    return TokenVerifier(settings, e2e_policy_for(settings))


def e2e_verifier() -> TokenVerifier:
    return verifier(environment="staging", e2e_oauth_simulation_key=E2E_KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(signing_input: str, key: str = SECRET) -> str:
    """``signing_input`` with the HS256 signature of exactly those characters."""
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def encode(header: dict[str, Any], claims: dict[str, Any], key: str = SECRET) -> str:
    return sign(f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}", key)


def good_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now - 5, "exp": now + 600, **extra}


HEADER = {"alg": "HS256", "typ": "JWT"}


def refused(verifier: TokenVerifier, token: str) -> tuple[CloseCode, str]:
    with pytest.raises((AuthError, SessionInvalid)) as caught:
        verifier.verify(token)
    return caught.value.code, caught.value.detail


MALFORMED = (CloseCode.AUTH_INVALID, "malformed token")

# --- Base64url as PyJWT takes it -----------------------------------------------------


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def with_unused_bit(segment: str) -> str:
    """``segment`` with a bit set past its data, which lenient decoders ignore."""
    assert len(segment) % 4 in {2, 3}
    return segment[:-1] + _ALPHABET[_ALPHABET.index(segment[-1]) | 1]


def _payload(lengths: set[int]) -> str:
    """A payload segment of good claims whose length modulo 4 is in ``lengths``."""
    claims = good_claims(pad="")
    while len(b64(json.dumps(claims).encode())) % 4 not in lengths:
        claims["pad"] += "x"
    return b64(json.dumps(claims).encode())


def _payload_variants() -> dict[str, str]:
    header = b64(json.dumps(HEADER).encode())
    # Four characters inserted into a whole number of quads: a lenient decoder
    # skips them and finds the same claims.
    whole = _payload({0})
    at = len(whole) // 2
    return {
        "junk-characters": f"{header}.{whole[:at]}!!!!{whole[at:]}",
        "whitespace": f"{header}.{whole[:at]}  \n\t{whole[at:]}",
        "padding-inside": f"{header}.{whole[:at]}===={whole[at:]}",
        "nul-characters": f"{header}.{whole[:at]}\x00\x00\x00\x00{whole[at:]}",
        "trailing-junk": f"{header}.{whole}!",
        "unused-bits": f"{header}.{with_unused_bit(_payload({2, 3}))}",
    }


@pytest.mark.parametrize("name", list(_payload_variants()))
def test_non_canonical_payload_signed_as_is(name: str) -> None:
    # Signed over the odd text itself: only the decoding can refuse it.
    assert refused(verifier(), sign(_payload_variants()[name])) == MALFORMED


def test_signature_with_unused_bits_set() -> None:
    # 32 bytes make 43 characters; the last carries 2 bits that must be zero.
    header, payload, signature = encode(HEADER, good_claims()).split(".")
    token = f"{header}.{payload}.{with_unused_bit(signature)}"
    assert refused(verifier(), token) == MALFORMED


def test_signature_with_padding_is_accepted_as_pyjwt_does() -> None:
    token = encode(HEADER, good_claims()) + "="
    assert verifier().verify(token).subject == "alice"


@pytest.mark.parametrize("text", ["é", "\ud800", "\x00"])
def test_a_token_that_is_not_ascii(text: str) -> None:
    token = encode(HEADER, good_claims())
    assert refused(verifier(), token[:10] + text + token[10:]) == MALFORMED


# --- Header rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"crit": ["foo"]}, "invalid token"),
        ({"crit": []}, "invalid token"),
        ({"crit": "b64"}, "invalid token"),
        ({"crit": ["b64"]}, "invalid token"),
        ({"b64": False}, "malformed token"),
        ({"b64": False, "crit": ["b64"]}, "malformed token"),
        ({"kid": 5}, "invalid token"),
        ({"kid": None}, "invalid token"),
        ({"kid": ["e2e"]}, "invalid token"),
    ],
    ids=repr,
)
def test_header_rules(header: dict[str, Any], reason: str) -> None:
    token = encode({**HEADER, **header}, good_claims())
    assert refused(verifier(), token) == (CloseCode.AUTH_INVALID, reason)


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "application/at+jwt", "application/JWT"])
def test_accepted_token_types(typ: str) -> None:
    assert verifier().verify(encode({"alg": "HS256", "typ": typ}, good_claims())).subject == "alice"


def test_no_token_type_is_accepted() -> None:
    assert verifier().verify(encode({"alg": "HS256"}, good_claims())).subject == "alice"


@pytest.mark.parametrize("typ", ["logout+jwt", "secevent+jwt", "JOSE", "", None, 1])
def test_other_token_types_are_refused(typ: object) -> None:
    token = encode({"alg": "HS256", "typ": typ}, good_claims())
    assert refused(verifier(), token) == (CloseCode.AUTH_INVALID, "token type not accepted")


# --- Claims -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iat": int(time.time()) + 600}, "token not yet valid"),
        ({"iat": None}, "invalid token"),
        ({"iat": "soon"}, "invalid token"),
        ({"nbf": None}, "malformed token"),
        ({"nbf": [1]}, "malformed token"),
        ({"exp": None}, "missing claim exp"),
        ({"exp": "later"}, "malformed token"),
        ({"sub": None}, "missing claim sub"),
        ({"jti": 5}, "invalid token"),
        ({"exp": MAX_EXPIRY + 1}, "exp after year 9999"),
        ({"exp": 10**30}, "exp after year 9999"),
    ],
    ids=repr,
)
def test_claim_rules(changes: dict[str, Any], reason: str) -> None:
    token = encode(HEADER, good_claims(**changes))
    assert refused(verifier(), token) == (CloseCode.AUTH_INVALID, reason)


def test_true_as_exp_is_an_expired_token_as_for_pyjwt() -> None:
    token = encode(HEADER, good_claims(exp=True))
    assert refused(verifier(), token) == (CloseCode.AUTH_EXPIRED, "token expired")


def test_the_last_expiry_a_date_can_hold() -> None:
    verified = verifier().verify(encode(HEADER, good_claims(exp=MAX_EXPIRY)))
    assert datetime.fromtimestamp(verified.expires_at, UTC).year == 9999


def test_times_are_read_as_pyjwt_reads_them() -> None:
    now = int(time.time())
    # int() truncates: 5.5 seconds ago reads as 6.
    token = encode(HEADER, good_claims(exp=f"{now + 600}", iat=now - 5.5))
    verified = verifier().verify(token)
    assert (verified.expires_at, verified.issued_at) == (now + 600, now - 6)
    assert verified.claims["exp"] == f"{now + 600}"


@pytest.mark.parametrize("sub", ["\ud800", "a\udc00b"])
def test_a_subject_that_is_not_unicode(sub: str) -> None:
    token = encode(HEADER, good_claims(sub=sub))
    assert refused(verifier(), token) == (CloseCode.SESSION_INVALID, "sub is not valid Unicode")


# --- Test tokens ----------------------------------------------------------------------


def make_test_token(**changes: Any) -> str:
    claims = {**good_claims(e2e=True), **changes}
    return encode({"alg": "HS256", "typ": "JWT", "kid": "e2e"}, claims, E2E_KEY)


def test_test_token_with_a_numeric_string_iat() -> None:
    now = int(time.time())
    verified = e2e_verifier().verify(make_test_token(iat=str(now - 5)))
    assert (verified.is_test, verified.issued_at) == (True, now - 5)


def test_test_token_with_a_string_iat() -> None:
    assert refused(e2e_verifier(), make_test_token(iat="soon")) == (
        CloseCode.AUTH_INVALID,
        "invalid token",
    )


def test_test_token_with_a_subject_that_is_not_unicode() -> None:
    assert refused(e2e_verifier(), make_test_token(sub="\udc00")) == (
        CloseCode.SESSION_INVALID,
        "sub is not valid Unicode",
    )


# --- Configuration ---------------------------------------------------------------------


def test_bad_public_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        verifier(jwt_algorithms="RS256", jwt_secret=None, jwt_public_key="not a pem")
    assert caught.value.variable == "CHATGATE_JWT_PUBLIC_KEY"


def test_a_public_key_as_the_secret_is_a_config_error() -> None:
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ConfigError) as caught:
        verifier(jwt_secret=pem)
    assert caught.value.variable == "CHATGATE_JWT_SECRET"


# --- JWKS ---------------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A JWKS URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """A JWKS URL that answers 200 with a body that is not JSON."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not json</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()


def rs256_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(good_claims(), key, algorithm="RS256", headers={"kid": "k1"})


async def test_a_jwks_endpoint_that_never_answers(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "JWKS_TIMEOUT_S", 0.2)
    pinned = verifier(jwt_secret=None, jwt_algorithms="RS256", jwks_url=silent_server)
    with pytest.raises(AuthError) as caught:
        await pinned.verify_async(rs256_token())
    assert (caught.value.code, caught.value.detail) == (
        CloseCode.TRY_AGAIN_LATER,
        "signing keys unavailable",
    )


async def test_a_jwks_endpoint_that_answers_garbage(garbage_server: str) -> None:
    pinned = verifier(jwt_secret=None, jwt_algorithms="RS256", jwks_url=garbage_server)
    with pytest.raises(AuthError) as caught:
        await pinned.verify_async(rs256_token())
    assert (caught.value.code, caught.value.detail) == (
        CloseCode.TRY_AGAIN_LATER,
        "signing keys unavailable",
    )
