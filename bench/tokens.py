"""The cost of verifying one HS256 token: PyJWT, a hand-written path that matches it, the cache.

Four cases, each verifying the same kind of token (``sub``, ``iat``, ``exp``,
HS256, a 64-byte secret):

- ``pyjwt``: ``jwt.decode_complete`` configured as the gateway configures it;
- ``matching``: :class:`MatchingHS256` below, what a hand-written HS256 path
  needs to do to refuse and accept what PyJWT 2.15 does (canonical base64url,
  the standard ``json`` module, ``int()`` on the time claims, the
  ``kid``/``crit``/``b64`` header rules); measured, never used by the server;
- ``miss``: ``TokenVerifier.verify`` on a token it has not seen (its HS*
  shortcut, the gateway's own rules and the cache insertion);
- ``declined``: the same for a token whose header has a ``kid``, which the
  shortcut leaves to PyJWT;
- ``hit``: ``TokenVerifier.verify`` on a token it verified before.

Time per verification, the best of ``--rounds`` rounds of ``--ops`` each, with
ratios to ``pyjwt``; with ``--instructions``, instructions per verification
counted by callgrind as the difference between a run of ``--ops`` and a run
of three times as many, so that the interpreter's start cancels out::

    .venv/bin/python -m bench.tokens
    .venv/bin/python -m bench.tokens --instructions --ops 2000
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from chatgate.auth.tokens import TokenVerifier
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings

SECRET = "bench-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef"  # noqa: S105 - a bench key
CASES = ("pyjwt", "matching", "miss", "declined", "hit")
_WARMUP = 200

_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
# The last character of a canonical segment leaves the bits past the data at zero.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class Refused(Exception):
    """The matching path refused the token."""


def _segment(segment: bytes) -> bytes:
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1:
        raise Refused("padding")
    if _ALPHABET.fullmatch(stripped) is None:
        raise Refused("alphabet")
    last = _CANONICAL_LAST.get(len(stripped) % 4)
    if last is not None and stripped[-1] not in last:
        raise Refused("unused bits")
    padded = stripped.translate(_TO_STANDARD) + b"=" * (-len(stripped) % 4)
    try:
        return binascii.a2b_base64(padded)
    except binascii.Error:
        raise Refused("base64") from None


def _header_rules(header: dict[str, Any]) -> None:
    if "kid" in header and not isinstance(header["kid"], str):
        raise Refused("kid")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit:
            raise Refused("crit")
        for ext in crit:
            if not isinstance(ext, str) or ext != "b64" or ext not in header:
                raise Refused("crit")
    if header.get("b64", True) is False:
        raise Refused("b64")


def _time_claims(claims: dict[str, Any], now: float) -> None:
    for name in ("exp", "sub"):
        if claims.get(name) is None:
            raise Refused("missing")
    for name in ("iat", "nbf", "exp"):
        if name in claims:
            try:
                value = int(claims[name])
            except (ValueError, TypeError, OverflowError):
                raise Refused(name) from None
            if (name == "exp" and value <= now) or (name != "exp" and value > now):
                raise Refused(name)
    if not isinstance(claims["sub"], str) or not isinstance(claims.get("jti", ""), str):
        raise Refused("sub")


class MatchingHS256:
    """A hand-written HS256 verifier that does what PyJWT 2.15 does (for measuring only)."""

    def __init__(self, secret: bytes) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims (raises Refused)."""
        raw = token.encode()
        signing_input, _, signature_b64 = raw.rpartition(b".")
        header_b64, dot, payload_b64 = signing_input.partition(b".")
        if not dot:
            raise Refused("segments")
        try:
            header = json.loads(_segment(header_b64))
        except (ValueError, RecursionError):
            raise Refused("header") from None
        if not isinstance(header, dict):
            raise Refused("header")
        _header_rules(header)
        payload, signature = _segment(payload_b64), _segment(signature_b64)
        if header.get("alg") != "HS256":
            raise Refused("alg")
        mac = self._mac.copy()
        mac.update(signing_input)
        if not hmac.compare_digest(mac.digest(), signature):
            raise Refused("signature")
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            raise Refused("payload") from None
        if not isinstance(claims, dict):
            raise Refused("payload")
        _time_claims(claims, time.time())
        return claims


def _tokens(count: int, headers: dict[str, str] | None = None) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"sub": f"user-{i}", "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex},
            SECRET,
            algorithm="HS256",
            headers=headers,
        )
        for i in range(count)
    ]


def _tokens_for(case: str, count: int) -> list[str]:
    return _tokens(count, {"kid": "k1"} if case == "declined" else None)


def operations(case: str, tokens: list[str]) -> Callable[[int], None]:
    """A function that verifies ``n`` tokens the way ``case`` does."""
    settings = load_settings(jwt_secret=SECRET, environment="production")
    verifier = TokenVerifier(settings, e2e_policy_for(settings))
    matching = MatchingHS256(SECRET.encode())
    options: jwt.types.Options = {"require": ["exp", "sub"], "verify_aud": False}
    first = tokens[0]
    verifier.verify(first)

    def run(n: int) -> None:
        if case == "pyjwt":
            for token in tokens[:n]:
                jwt.decode_complete(token, SECRET, algorithms=["HS256"], options=options)
        elif case == "matching":
            for token in tokens[:n]:
                matching.verify(token)
        elif case in {"miss", "declined"}:
            for token in tokens[1 : n + 1]:
                verifier.verify(token)
        else:
            for _ in range(n):
                verifier.verify(first)

    return run


def timed(ops: int, rounds: int) -> dict[str, float]:
    """Microseconds per verification for each case, the best round of ``rounds``."""
    results: dict[str, float] = {}
    for case in CASES:
        best = float("inf")
        for _ in range(rounds):
            # Fresh tokens every round, so that a miss never meets a token it cached.
            run = operations(case, _tokens_for(case, ops + 1))
            if case not in {"miss", "declined"}:
                run(min(_WARMUP, ops))
            started = time.perf_counter()
            run(ops)
            best = min(best, (time.perf_counter() - started) / ops)
        results[case] = best * 1e6
    return results


def _callgrind(case: str, ops: int, minted: int, scratch: Path) -> int:
    out = scratch / f"{case}-{ops}.out"
    subprocess.run(  # noqa: S603 - our own interpreter under valgrind
        [  # noqa: S607 - valgrind found on PATH, checked first
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.tokens",
            "--child",
            case,
            "--ops",
            str(ops),
            "--minted",
            str(minted),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    for line in reversed(out.read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def counted(ops: int) -> dict[str, float]:
    """Instructions per verification for each case (callgrind, difference of two runs)."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="chatgate-tokens-") as scratch:
        for case in CASES:
            small = _callgrind(case, ops, 3 * ops + 1, Path(scratch))
            large = _callgrind(case, 3 * ops, 3 * ops + 1, Path(scratch))
            results[case] = (large - small) / (2 * ops)
    return results


def _print(results: dict[str, float], unit: str, digits: int) -> None:
    base = results["pyjwt"]
    for case, value in results.items():
        print(f"  {case:<10} {value:>12,.{digits}f} {unit}   {value / base:6.3f}x pyjwt")


def main(argv: list[str] | None = None) -> int:
    """Print the cost of one verification for each case, with ratios to PyJWT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=5000, help="verifications per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--minted", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ops < 1 or args.rounds < 1:
        parser.error("--ops and --rounds must be at least 1")
    if args.child:
        # Both runs of a case mint as many tokens and warm up alike; only ops differ.
        run = operations(args.child, _tokens_for(args.child, args.minted))
        if args.child not in {"miss", "declined"}:
            run(min(_WARMUP, args.ops))
        run(args.ops)
        return 0
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 1
        print(f"instructions per HS256 verification ({args.ops} and {3 * args.ops} runs)")
        _print(counted(args.ops), "instructions", 0)
        return 0
    print(f"µs per HS256 verification (best of {args.rounds} rounds of {args.ops})")
    _print(timed(args.ops, args.rounds), "µs", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
