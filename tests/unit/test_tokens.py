"""TokenVerifier: pinned algorithms, required claims, test tokens only where E2E is on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.auth.tokens import TokenVerifier, VerifiedToken
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

# 64 bytes: long enough for HS512 too, so PyJWT warns about nothing.
SECRET = "main-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef-0"
E2E_KEY = "e2e-key-0123456789abcdef-0123456789-test"
OTHER_KEY = "other-key-0123456789abcdef-0123456789-xx"


def verifier(**overrides: Any) -> TokenVerifier:
    settings = load_settings(**overrides)
    return TokenVerifier(settings, e2e_policy_for(settings))


def hs_verifier(**overrides: Any) -> TokenVerifier:
    return verifier(jwt_secret=SECRET, environment="production", **overrides)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_token(
    header: dict[str, Any], claims: dict[str, Any], key: bytes | None, digest: Any = None
) -> str:
    """A JWT built by hand, for what PyJWT refuses to produce (alg none, HMAC with a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), digest or hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def claims(sub: str = "alice", ttl: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + ttl, **extra}


def rejection(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    exc = caught.value
    # The token never appears in what is logged or sent to the client.
    for text in (str(exc), exc.reason, exc.detail, repr(exc)):
        if token:
            assert token not in text
        for part in token.split("."):
            if len(part) > 8:
                assert part not in text
    assert SECRET not in str(exc)
    assert E2E_KEY not in str(exc)
    return exc


def assert_rejected(verifier: TokenVerifier, token: str, code: CloseCode, detail: str) -> None:
    exc = rejection(verifier, token)
    assert (exc.code, exc.detail) == (code, detail)


# --- HS256 user tokens ----------------------------------------------------------


def test_valid_token() -> None:
    token = mint_token(SECRET, "alice", ttl_s=600)
    verified = hs_verifier().verify(token)
    assert isinstance(verified, VerifiedToken)
    assert verified.subject == "alice"
    assert verified.is_test is False
    assert verified.expires_at > time.time()
    assert verified.issued_at is not None
    assert token not in repr(verified)


async def test_verify_async_without_jwks() -> None:
    verified = await hs_verifier().verify_async(mint_token(SECRET, "bob"))
    assert verified.subject == "bob"


def test_expired_token_is_4004() -> None:
    token = mint_token(SECRET, "alice", ttl_s=-10)
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_EXPIRED, "token expired")


def test_bad_signature() -> None:
    token = mint_token(OTHER_KEY, "alice")
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "bad signature")


def test_tampered_claims() -> None:
    header, _, signature = mint_token(SECRET, "alice").split(".")
    forged = b64(json.dumps(claims("mallory")).encode())
    token = f"{header}.{forged}.{signature}"
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "bad signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(alg: str) -> None:
    token = hand_token({"alg": alg, "typ": "JWT"}, claims(), None)
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "algorithm not allowed")


def test_alg_none_with_a_signature_is_still_refused() -> None:
    token = hand_token({"alg": "none"}, claims(), SECRET.encode())
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "algorithm not allowed")


def test_alg_missing() -> None:
    token = hand_token({"typ": "JWT"}, claims(), SECRET.encode())
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "algorithm not allowed")


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_hs_algorithm_not_pinned(algorithm: str) -> None:
    token = mint_token(SECRET, "alice", algorithm=algorithm)
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "algorithm not allowed")


def test_hs512_accepted_when_pinned() -> None:
    token = mint_token(SECRET, "alice", algorithm="HS512")
    assert hs_verifier(jwt_algorithms="HS256,HS512").verify(token).subject == "alice"


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_missing_required_claim(claim: str) -> None:
    body = claims()
    del body[claim]
    token = jwt.encode(body, SECRET, algorithm="HS256")
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, f"missing claim {claim}")


def test_non_string_sub() -> None:
    token = jwt.encode({**claims(), "sub": 12345}, SECRET, algorithm="HS256")
    exc = rejection(hs_verifier(), token)
    assert exc.code == CloseCode.AUTH_INVALID


def test_not_yet_valid() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256")
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "token not yet valid")


def test_issuer_and_audience_enforced_when_configured() -> None:
    strict = hs_verifier(jwt_issuer="https://idp.example", jwt_audience="chatgate")
    good = mint_token(SECRET, "alice", issuer="https://idp.example", audience="chatgate")
    assert strict.verify(good).subject == "alice"
    wrong_iss = mint_token(SECRET, "alice", issuer="https://evil.example", audience="chatgate")
    assert_rejected(strict, wrong_iss, CloseCode.AUTH_INVALID, "wrong issuer")
    wrong_aud = mint_token(SECRET, "alice", issuer="https://idp.example", audience="other")
    assert_rejected(strict, wrong_aud, CloseCode.AUTH_INVALID, "wrong audience")
    no_aud = mint_token(SECRET, "alice", issuer="https://idp.example")
    assert_rejected(strict, no_aud, CloseCode.AUTH_INVALID, "missing claim aud")
    no_iss = mint_token(SECRET, "alice", audience="chatgate")
    assert_rejected(strict, no_iss, CloseCode.AUTH_INVALID, "missing claim iss")


def test_issuer_and_audience_ignored_when_not_configured() -> None:
    token = mint_token(SECRET, "alice", issuer="https://any.example", audience="anything")
    assert hs_verifier().verify(token).subject == "alice"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "a.b",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
        b64(b"[1,2]") + ".e30.sig",
        b64(b"not json") + ".e30.sig",
    ],
    ids=["empty", "words", "abc", "two-parts", "header-only", "bad-payload", "array", "garbage"],
)
def test_malformed(token: str) -> None:
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "malformed token")


def test_oversized_token() -> None:
    body = claims(padding="p" * 10_000)
    token = jwt.encode(body, SECRET, algorithm="HS256")
    assert_rejected(hs_verifier(), token, CloseCode.AUTH_INVALID, "malformed token")


def test_non_test_token_with_e2e_claim() -> None:
    for value in (True, False, "yes"):
        token = jwt.encode(claims(e2e=value), SECRET, algorithm="HS256")
        assert_rejected(
            hs_verifier(),
            token,
            CloseCode.AUTH_INVALID,
            "e2e claim on a token that is not a test token",
        )


# --- Asymmetric keys and algorithm confusion ----------------------------------------


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    # One RSA key for the module: generating one takes a noticeable moment.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY_ALGORITHMS = ["RS256", "ES256", "EdDSA"]


@pytest.fixture(params=KEY_ALGORITHMS)
def key_pair(request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey) -> tuple[str, Any]:
    algorithm: str = request.param
    if algorithm == "RS256":
        return algorithm, rsa_key
    if algorithm == "ES256":
        return algorithm, ec.generate_private_key(ec.SECP256R1())
    return algorithm, ed25519.Ed25519PrivateKey.generate()


def test_asymmetric_token_accepted(key_pair: tuple[str, Any]) -> None:
    algorithm, private_key = key_pair
    pinned = verifier(jwt_algorithms=algorithm, jwt_public_key=public_pem(private_key))
    token = jwt.encode(claims("carol"), private_key, algorithm=algorithm)
    verified = pinned.verify(token)
    assert (verified.subject, verified.is_test) == ("carol", False)


def test_asymmetric_token_from_another_key(key_pair: tuple[str, Any]) -> None:
    algorithm, private_key = key_pair
    pinned = verifier(jwt_algorithms=algorithm, jwt_public_key=public_pem(private_key))
    if algorithm == "RS256":
        other: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        other = ec.generate_private_key(ec.SECP256R1())
    else:
        other = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), other, algorithm=algorithm)
    assert_rejected(pinned, token, CloseCode.AUTH_INVALID, "bad signature")


def test_expired_asymmetric_token(key_pair: tuple[str, Any]) -> None:
    algorithm, private_key = key_pair
    pinned = verifier(jwt_algorithms=algorithm, jwt_public_key=public_pem(private_key))
    token = jwt.encode(claims(ttl=-5), private_key, algorithm=algorithm)
    assert_rejected(pinned, token, CloseCode.AUTH_EXPIRED, "token expired")


def test_hmac_signed_with_the_public_key_is_refused(key_pair: tuple[str, Any]) -> None:
    algorithm, private_key = key_pair
    pem = public_pem(private_key)
    pinned = verifier(jwt_algorithms=algorithm, jwt_public_key=pem)
    forged = hand_token({"alg": "HS256", "typ": "JWT"}, claims("mallory"), pem.encode())
    assert_rejected(pinned, forged, CloseCode.AUTH_INVALID, "algorithm not allowed")


def test_algorithm_confusion_when_hs256_is_also_pinned_without_a_secret(
    key_pair: tuple[str, Any],
) -> None:
    algorithm, private_key = key_pair
    pem = public_pem(private_key)
    pinned = verifier(jwt_algorithms=f"{algorithm},HS256", jwt_public_key=pem)
    forged = hand_token({"alg": "HS256", "typ": "JWT"}, claims("mallory"), pem.encode())
    assert_rejected(pinned, forged, CloseCode.AUTH_INVALID, "algorithm not allowed")


def test_algorithm_confusion_when_hs256_is_also_pinned_with_a_secret(
    key_pair: tuple[str, Any],
) -> None:
    algorithm, private_key = key_pair
    pem = public_pem(private_key)
    both = verifier(jwt_algorithms=f"HS256,{algorithm}", jwt_public_key=pem, jwt_secret=SECRET)
    forged = hand_token({"alg": "HS256", "typ": "JWT"}, claims("mallory"), pem.encode())
    assert_rejected(both, forged, CloseCode.AUTH_INVALID, "bad signature")
    # Both legitimate kinds still pass.
    assert both.verify(mint_token(SECRET, "hs")).subject == "hs"
    assert both.verify(jwt.encode(claims("pk"), private_key, algorithm=algorithm)).subject == "pk"


def test_asymmetric_algorithm_not_pinned(rsa_key: rsa.RSAPrivateKey) -> None:
    pinned = verifier(jwt_algorithms="RS256", jwt_public_key=public_pem(rsa_key))
    token = jwt.encode(claims(), rsa_key, algorithm="RS512")
    assert_rejected(pinned, token, CloseCode.AUTH_INVALID, "algorithm not allowed")


# --- Test tokens -------------------------------------------------------------------------


def e2e_verifier(**overrides: Any) -> TokenVerifier:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "e2e_oauth_simulation_key": E2E_KEY,
        "environment": "staging",
    }
    values.update(overrides)
    return verifier(**values)


def test_test_token_accepted_where_e2e_is_on() -> None:
    verified = e2e_verifier().verify(mint_test_token(E2E_KEY, "bot"))
    assert (verified.subject, verified.is_test) == ("bot", True)
    assert verified.claims["e2e"] is True


@pytest.mark.parametrize(
    "overrides",
    [
        {"environment": "test"},
        {"environment": "development"},
        {"environment": None, "k_service": "chat-staging"},
        {"environment": "staging", "disable_enhanced_e2e_detection": True, "e2e_testing": True},
    ],
    ids=["test", "development", "inferred-staging", "staging-rollback-with-e2e-testing"],
)
def test_test_token_accepted_in_every_enabled_tier(overrides: dict[str, Any]) -> None:
    assert e2e_verifier(**overrides).verify(mint_test_token(E2E_KEY, "bot")).is_test is True


@pytest.mark.parametrize(
    "overrides",
    [
        {"environment": "production"},
        {"environment": "production", "e2e_testing": True},
        {"environment": None, "k_service": "product-api"},
        {"environment": "staging", "disable_enhanced_e2e_detection": True},
    ],
    ids=["production", "production-e2e-testing", "cloud-run-fail-safe", "staging-rollback"],
)
def test_test_token_where_e2e_is_off_is_4005(overrides: dict[str, Any]) -> None:
    token = mint_test_token(E2E_KEY, "bot")
    assert_rejected(
        e2e_verifier(**overrides),
        token,
        CloseCode.E2E_NOT_ENABLED,
        "test tokens are not accepted here",
    )


def test_test_token_without_a_configured_key() -> None:
    token = mint_test_token(E2E_KEY, "bot")
    assert_rejected(
        e2e_verifier(e2e_oauth_simulation_key=None),
        token,
        CloseCode.AUTH_INVALID,
        "e2e key not configured",
    )


def test_test_token_with_the_wrong_key() -> None:
    token = mint_test_token(OTHER_KEY, "bot")
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "bad signature")


def test_test_token_signed_with_the_main_key() -> None:
    token = mint_test_token(SECRET, "bot")
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "bad signature")


def test_test_token_without_e2e_claim() -> None:
    token = jwt.encode(claims("bot"), E2E_KEY, algorithm="HS256", headers={"kid": "e2e"})
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "test token without e2e claim")


def test_test_token_with_a_false_e2e_claim() -> None:
    token = jwt.encode(claims("bot", e2e=False), E2E_KEY, algorithm="HS256", headers={"kid": "e2e"})
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "test token without e2e claim")


def test_test_token_living_longer_than_an_hour() -> None:
    token = jwt.encode(
        claims("bot", ttl=3601, e2e=True), E2E_KEY, algorithm="HS256", headers={"kid": "e2e"}
    )
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "test token lifetime over 3600s")


def test_test_token_living_exactly_an_hour() -> None:
    assert e2e_verifier().verify(mint_test_token(E2E_KEY, "bot", ttl_s=3600)).is_test is True


def test_test_token_without_iat() -> None:
    body = claims("bot", e2e=True)
    del body["iat"]
    token = jwt.encode(body, E2E_KEY, algorithm="HS256", headers={"kid": "e2e"})
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "missing claim iat")


def test_expired_test_token() -> None:
    token = mint_test_token(E2E_KEY, "bot", now=time.time() - 1000, ttl_s=60)
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_EXPIRED, "token expired")


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("HS512", hashlib.sha512), ("HS384", hashlib.sha384), ("none", None)],
)
def test_test_token_with_another_algorithm(alg: str, digest: Any) -> None:
    key = None if digest is None else E2E_KEY.encode()
    token = hand_token({"alg": alg, "kid": "e2e"}, claims("bot", e2e=True), key, digest)
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "test tokens must use HS256")


def test_user_token_signed_with_the_e2e_key_is_refused() -> None:
    token = mint_token(E2E_KEY, "alice")
    assert_rejected(e2e_verifier(), token, CloseCode.AUTH_INVALID, "bad signature")


def test_mint_test_token_refuses_long_lifetimes() -> None:
    with pytest.raises(ValueError, match="3600"):
        mint_test_token(E2E_KEY, "bot", ttl_s=3601)


def test_minted_test_token_shape() -> None:
    token = mint_test_token(E2E_KEY, "bot", ttl_s=900, now=1_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "e2e", "typ": "JWT"}
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["e2e"] is True
    assert body["exp"] - body["iat"] == 900
    assert body["sub"] == "bot"
