"""The verifier and PyJWT, fed the same generated tokens, must agree on each.

The oracle below is PyJWT configured as the gateway configures it (pinned
algorithms, ``exp`` and ``sub`` required, ``iss``/``aud`` when set, no leeway),
followed by the rules the gateway adds on purpose (``tokens.py`` lists them).
For every token the verifier must give the same answer: the same claims on
accept, the same close code and reason on refusal, and never any other
exception (no 1011), both on first sight and from its cache.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from chatgate.auth.hs_fast import HmacShortcut
from chatgate.auth.tokens import MAX_EXPIRY, MAX_TOKEN_CHARS, TokenVerifier
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError, SessionInvalid
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

SECRET = "main-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef-0"
E2E_KEY = "e2e-key-0123456789abcdef-0123456789-test"
OTHER_KEY = "other-key-0123456789abcdef-0123456789-xx"
ISSUER = "https://idp.example"
AUDIENCE = "chatgate"
HS_PINNED = ["HS256", "HS384"]


def now() -> int:
    """The clock at the moment a value is drawn: the suite may run long after import."""
    return int(time.time())


@dataclass(frozen=True)
class Config:
    """One way to configure the gateway, and the verifier built from it."""

    name: str
    issuer: str | None
    audience: str | None
    e2e: bool


CONFIGS = [
    Config("plain", None, None, e2e=False),
    Config("issuer-audience", ISSUER, AUDIENCE, e2e=False),
    Config("e2e", None, None, e2e=True),
]


@functools.cache
def verifier_for(config: Config) -> TokenVerifier:
    # Built once per configuration and kept: later examples meet its cache.
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_algorithms": ",".join(HS_PINNED),
        "jwt_issuer": config.issuer,
        "jwt_audience": config.audience,
        "environment": "staging" if config.e2e else "production",
    }
    if config.e2e:
        values["e2e_oauth_simulation_key"] = E2E_KEY
    loaded = load_settings(**values)
    return TokenVerifier(loaded, e2e_policy_for(loaded))


# --- The oracle --------------------------------------------------------------------

Outcome = tuple[Any, ...]

_PYJWT_REASONS: list[tuple[type[Exception], CloseCode, str]] = [
    (jwt.ExpiredSignatureError, CloseCode.AUTH_EXPIRED, "token expired"),
    (jwt.InvalidAudienceError, CloseCode.AUTH_INVALID, "wrong audience"),
    (jwt.InvalidIssuerError, CloseCode.AUTH_INVALID, "wrong issuer"),
    (jwt.InvalidSignatureError, CloseCode.AUTH_INVALID, "bad signature"),
    (jwt.ImmatureSignatureError, CloseCode.AUTH_INVALID, "token not yet valid"),
    (jwt.InvalidAlgorithmError, CloseCode.AUTH_INVALID, "algorithm not allowed"),
    (jwt.DecodeError, CloseCode.AUTH_INVALID, "malformed token"),
    (jwt.PyJWTError, CloseCode.AUTH_INVALID, "invalid token"),
]


def _refused(exc: jwt.PyJWTError) -> Outcome:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return ("refuse", CloseCode.AUTH_INVALID, f"missing claim {exc.claim}")
    code, detail = next((c, d) for kind, c, d in _PYJWT_REASONS if isinstance(exc, kind))
    return ("refuse", code, detail)


def _pyjwt_header(token: str) -> dict[str, Any] | None:
    """The header as PyJWT reads it (its own segment decoder), None if it cannot."""
    if token.count(".") < 2:
        return None
    try:
        data = PyJWS._decode_base64url_segment(token.split(".", maxsplit=1)[0].encode(), "header")
        header = json.loads(data)
    except (jwt.DecodeError, ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def _gateway_refusal(
    header: dict[str, Any], claims: dict[str, Any], *, is_test: bool
) -> str | None:
    """The reason the gateway refuses a token PyJWT accepted, in the gateway's order."""
    typ = header.get("typ", "JWT")
    accepted_types = {"jwt", "at+jwt", "application/jwt", "application/at+jwt"}
    if not (isinstance(typ, str) and typ.lower() in accepted_types):
        return "token type not accepted"
    if is_test and claims.get("e2e") is not True:
        return "test token without e2e claim"
    if is_test and int(claims["exp"]) - int(claims["iat"]) > 3600:
        return "test token lifetime over 3600s"
    if not is_test and "e2e" in claims:
        return "e2e claim on a token that is not a test token"
    if int(claims["exp"]) > MAX_EXPIRY:
        return "exp after year 9999"
    return None


def _gateway_rules(decoded: dict[str, Any], *, is_test: bool) -> Outcome:
    header, claims = decoded["header"], decoded["payload"]
    reason = _gateway_refusal(header, claims, is_test=is_test)
    if reason is not None:
        return ("refuse", CloseCode.AUTH_INVALID, reason)
    try:
        claims["sub"].encode()
    except UnicodeEncodeError:
        return ("refuse", CloseCode.SESSION_INVALID, "sub is not valid Unicode")
    return ("accept", _comparable(claims), is_test)


def _comparable(claims: dict[str, Any]) -> str:
    # Two parses of NaN are two objects that compare unequal; their JSON is the same.
    return json.dumps(claims, sort_keys=True)


def expected(token: str, config: Config) -> Outcome:
    """What the gateway must answer: PyJWT's verdict, then the gateway's own rules."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return ("refuse", CloseCode.AUTH_INVALID, "malformed token")
    header = _pyjwt_header(token)
    is_test = header is not None and header.get("kid") == "e2e"
    if is_test:
        assert header is not None
        if not config.e2e:
            return ("refuse", CloseCode.E2E_NOT_ENABLED, "test tokens are not accepted here")
        if header.get("alg") != "HS256":
            return ("refuse", CloseCode.AUTH_INVALID, "test tokens must use HS256")
        key, algorithms, required = E2E_KEY, ["HS256"], ["exp", "iat", "sub"]
    else:
        key, algorithms, required = SECRET, HS_PINNED, ["exp", "sub"]
    try:
        decoded = jwt.decode_complete(
            token,
            key,
            algorithms=algorithms,
            issuer=None if is_test else config.issuer,
            audience=None if is_test else config.audience,
            options={
                "require": required,
                "verify_aud": config.audience is not None and not is_test,
            },
        )
    except jwt.PyJWTError as exc:
        return _refused(exc)
    return _gateway_rules(decoded, is_test=is_test)


def actual(token: str, config: Config) -> Outcome:
    """What the verifier answers; any exception but ours fails the test."""
    try:
        verified = verifier_for(config).verify(token)
    except (AuthError, SessionInvalid) as exc:
        return ("refuse", exc.code, exc.detail)
    # The expiry is one a date can hold: the server formats it for the client.
    datetime.fromtimestamp(verified.expires_at, UTC)
    assert verified.subject == verified.claims["sub"]
    assert verified.expires_at == int(verified.claims["exp"])
    return ("accept", _comparable(verified.claims), verified.is_test)


def assert_same(token: str, config: Config) -> None:
    """Both on first sight and from the cache, the verifier answers as the oracle does."""
    want = expected(token, config)
    assert actual(token, config) == want
    assert actual(token, config) == want


# --- Generated tokens ----------------------------------------------------------------

_OFFSETS = [-(10**6), -3600, -120, 120, 3000, 3600, 3601, 10**6]
_TIMES = st.one_of(
    st.sampled_from(_OFFSETS).map(lambda o: now() + o),
    st.sampled_from(_OFFSETS).map(lambda o: now() + o + 0.5),
    st.sampled_from(_OFFSETS).map(lambda o: str(now() + o)),
    st.sampled_from(
        [None, True, False, 0, -1, MAX_EXPIRY, MAX_EXPIRY + 1, 10**30, 2**63, -(2**63), 1e300]
    ),
    st.sampled_from(["abc", "", " 1 ", "1e3", [1], {"t": 1}, float("inf"), float("nan")]),
)
_STRINGS = st.sampled_from(
    ["alice", "", "e2e:bob", "a\x00b", "\ud800", "x\udc00y", "ünïcødé", "x" * 300, ISSUER, AUDIENCE]
)
_ANY = st.one_of(_STRINGS, _TIMES, st.lists(_STRINGS, max_size=3))
_CLAIM_VALUES = {
    "exp": _TIMES,
    "iat": _TIMES,
    "nbf": _TIMES,
    "sub": st.one_of(_STRINGS, _ANY),
    "iss": st.one_of(st.just(ISSUER), _ANY),
    "aud": st.one_of(st.just(AUDIENCE), st.just([AUDIENCE, "x"]), st.just([]), _ANY),
    "jti": st.one_of(st.just("id-1"), _ANY),
    "e2e": st.sampled_from([True, False, "true", None, 1]),
}
_HEADER_VALUES = {
    "alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "None", "RS256", "", None, 5]),
    "typ": st.sampled_from(
        ["JWT", "jwt", "at+jwt", "application/at+jwt", "JOSE", "logout+jwt", None, 5]
    ),
    "kid": st.sampled_from(["e2e", "k1", 5, None, ["e2e"], ""]),
    "crit": st.sampled_from([["b64"], ["exp"], [], "b64", [5]]),
    "b64": st.sampled_from([True, False, "false", None]),
}
_DELETE = object()


@st.composite
def _changes(draw: st.DrawFn, values: dict[str, Any]) -> dict[str, Any]:
    """Up to three fields to set to an odd value, or to delete."""
    names = draw(st.lists(st.sampled_from(list(values)), max_size=3, unique=True))
    return {name: draw(st.one_of(st.just(_DELETE), values[name])) for name in names}


def _apply(fields: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is _DELETE:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: Any, draw: st.DrawFn) -> bytes:
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = json.dumps(value, separators=separators, ensure_ascii=draw(st.booleans()))
    # A lone surrogate written raw is not UTF-8: PyJWT must refuse those bytes.
    return text.encode("utf-8", "surrogatepass")


def _odd_payloads() -> list[bytes]:
    valid = {"sub": "alice", "exp": now() + 600}
    return [
        b"[1, 2]",
        b"null",
        b"\xff\xfe",
        json.dumps(valid).encode("utf-16"),
        b"\xef\xbb\xbf" + json.dumps(valid).encode(),
        b'{"sub": "alice", "sub": 5, "exp": %d}' % valid["exp"],
        b'{"sub": "bob", "exp": %d, "sub": "alice"}' % valid["exp"],
        b'{"sub": "alice", "exp": 1e400}',
        b'{"sub": "alice", "exp": NaN}',
        b'{"sub": "alice", "exp": 1%s}' % (b"0" * 5000),
        b'{"sub": "alice", "exp": %d, "x": %s}' % (valid["exp"], b"[" * 3000 + b"]" * 3000),
    ]


_DIGESTS = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _mutate(token: str, draw: st.DrawFn) -> str:
    """One change to the finished token, most often none."""
    kind = draw(st.sampled_from(["none"] * 6 + ["insert", "pad", "bits", "segments", "case"]))
    if kind == "none" or not token:
        return token
    at = draw(st.integers(0, len(token) - 1))
    if kind == "insert":
        return (
            token[:at]
            + draw(st.sampled_from(["!", "+", "/", " ", "\n", "=", "é", "\ud800", "."]))
            + token[at:]
        )
    if kind == "pad":
        parts = token.split(".")
        index = draw(st.integers(0, len(parts) - 1))
        parts[index] += draw(st.sampled_from(["=", "==", "==="]))
        return ".".join(parts)
    if kind == "bits":
        parts = token.split(".")
        index = draw(st.integers(0, len(parts) - 1))
        if parts[index]:
            last = parts[index][-1]
            parts[index] = parts[index][:-1] + chr(
                ord(last) + 1 if last not in "z9_-" else ord("A")
            )
        return ".".join(parts)
    if kind == "segments":
        return draw(
            st.sampled_from([token + ".x", token.rpartition(".")[0], token.replace(".", "..", 1)])
        )
    return token[:at] + token[at].swapcase() + token[at + 1 :]


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """A valid token, then (three times in four) a few changes: header, claims, key, bytes."""
    test_token = draw(st.booleans())
    header: dict[str, Any] = {"alg": draw(st.sampled_from(HS_PINNED)), "typ": "JWT"}
    claims: dict[str, Any] = {"sub": "alice", "iat": now() - 5, "exp": now() + 600}
    if test_token:
        header.update(alg="HS256", kid="e2e")
        claims["e2e"] = True
    else:
        claims.update(iss=ISSUER, aud=AUDIENCE)
    usual_key = E2E_KEY if test_token else SECRET
    changed = draw(st.integers(0, 3)) > 0
    if changed:
        header = _apply(header, draw(_changes(_HEADER_VALUES)))
        header = dict(draw(st.permutations(list(header.items()))))
        claims = _apply(claims, draw(_changes(_CLAIM_VALUES)))
    odd = changed and draw(st.integers(0, 19)) == 0
    payload = draw(st.sampled_from(_odd_payloads())) if odd else _json(claims, draw)
    signing_input = f"{_b64(_json(header, draw))}.{_b64(payload)}"
    keys = [usual_key] * 4 + [SECRET, E2E_KEY, OTHER_KEY, None]
    key = draw(st.sampled_from(keys)) if changed else usual_key
    alg = header.get("alg")
    digest = _DIGESTS.get(alg, hashlib.sha256) if isinstance(alg, str) else hashlib.sha256
    mac = None if key is None else hmac.new(key.encode(), signing_input.encode(), digest)
    token = f"{signing_input}.{'' if mac is None else _b64(mac.digest())}"
    return _mutate(token, draw) if changed else token


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(token=tokens(), config=st.sampled_from(CONFIGS))
def test_verifier_agrees_with_pyjwt(token: str, config: Config) -> None:
    assert_same(token, config)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.text(max_size=300), config=st.sampled_from(CONFIGS))
def test_any_string_is_answered_with_a_close_code(token: str, config: Config) -> None:
    assert_same(token, config)


def test_the_corpus_reaches_acceptance() -> None:
    # A generator that never produced an acceptable token, or none the shortcut
    # takes, would prove nothing.
    accepted = {c.name: 0 for c in CONFIGS}
    shortcut = {c.name: 0 for c in CONFIGS}

    @settings(
        max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(token=tokens(), config=st.sampled_from(CONFIGS))
    def count(token: str, config: Config) -> None:
        if expected(token, config)[0] == "accept":
            accepted[config.name] += 1
        if shortcut_for(config).claims(token, time.time()) is not None:
            shortcut[config.name] += 1

    count()
    assert all(accepted.values()), accepted
    assert all(shortcut.values()), shortcut


@functools.cache
def shortcut_for(config: Config) -> HmacShortcut:
    return HmacShortcut(
        SECRET.encode(),
        HS_PINNED,
        issuer=config.issuer,
        audience=config.audience,
        max_expiry=MAX_EXPIRY,
    )


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(token=tokens(), config=st.sampled_from(CONFIGS))
def test_the_hs_shortcut_only_accepts_what_pyjwt_accepts(token: str, config: Config) -> None:
    claims = shortcut_for(config).claims(token, time.time())
    if claims is not None:
        # PyJWT alone, before the gateway's own rules: those apply to both paths alike.
        decoded = jwt.decode_complete(
            token,
            SECRET,
            algorithms=HS_PINNED,
            issuer=config.issuer,
            audience=config.audience,
            options={"require": ["exp", "sub"], "verify_aud": config.audience is not None},
        )
        assert _comparable(decoded["payload"]) == _comparable(claims)
