"""The close-code table matches docs/protocol.md section 5, and reasons fit a close frame."""

from __future__ import annotations

import pytest

from chatgate.closecodes import (
    CLOSE_CODES,
    MAX_REASON_BYTES,
    CloseCode,
    Retry,
    close_reason,
    info,
    parse_reason,
)
from chatgate.errors import AuthError, CloseConnection, SessionInvalid

# docs/protocol.md section 5, written out literally: the code must agree with the contract.
EXPECTED: dict[int, tuple[str, Retry]] = {
    1000: ("normal", Retry.NEVER),
    1007: ("invalid_payload", Retry.NEVER),
    1009: ("message_too_big", Retry.NEVER),
    1011: ("internal_error", Retry.BACKOFF),
    1012: ("service_restart", Retry.NOW),
    1013: ("try_again_later", Retry.BACKOFF),
    4000: ("bad_request", Retry.NEVER),
    4001: ("auth_required", Retry.NEVER),
    4003: ("auth_invalid", Retry.NEVER),
    4004: ("auth_expired", Retry.NEVER),
    4005: ("e2e_not_enabled", Retry.NEVER),
    4006: ("origin_denied", Retry.NEVER),
    4007: ("session_invalid", Retry.NEVER),
    4009: ("too_many_errors", Retry.NEVER),
    4010: ("connection_limit", Retry.NEVER),
    4100: ("rate_limited", Retry.BACKOFF),
    4101: ("heartbeat_timeout", Retry.BACKOFF),
    4102: ("slow_consumer", Retry.BACKOFF),
}


def test_table_has_exactly_the_contract_codes() -> None:
    assert len(EXPECTED) == 18
    assert sorted(int(code) for code in CLOSE_CODES) == sorted(EXPECTED)
    assert sorted(int(code) for code in CloseCode) == sorted(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(EXPECTED.items()), ids=str)
def test_slug_and_retry_class(code: int, expected: tuple[str, Retry]) -> None:
    slug, retry = expected
    row = info(code)
    assert row is not None
    assert row.code == code
    assert row.slug == slug
    assert row.retry is retry
    assert row.explanation
    assert row.advice


def test_retry_rule_of_thumb() -> None:
    for code, row in CLOSE_CODES.items():
        if 4000 <= code < 4100:
            assert row.retry is Retry.NEVER, code
        elif 4100 <= code < 4200 or code in {1011, 1013}:
            assert row.retry is Retry.BACKOFF, code
        elif code == 1012:
            assert row.retry is Retry.NOW
        else:
            assert code in {1000, 1007, 1009}
            assert row.retry is Retry.NEVER


def test_slugs_are_unique() -> None:
    slugs = [row.slug for row in CLOSE_CODES.values()]
    assert len(set(slugs)) == len(slugs)


@pytest.mark.parametrize("code", [999, 1001, 1006, 1010, 4002, 4008, 4999, 0])
def test_unknown_codes_have_no_row(code: int) -> None:
    assert info(code) is None


def test_reason_is_slug_colon_detail() -> None:
    assert close_reason(CloseCode.AUTH_INVALID, "bad signature") == "auth_invalid: bad signature"
    assert close_reason(CloseCode.INTERNAL_ERROR, "cid=abc123") == "internal_error: cid=abc123"


def test_reason_without_detail_is_the_slug() -> None:
    assert close_reason(CloseCode.NORMAL) == "normal"


def _check_cut(code: CloseCode, detail: str) -> None:
    full = f"{CLOSE_CODES[code].slug}: {detail}"
    reason = close_reason(code, detail)
    encoded = reason.encode()
    assert len(encoded) <= MAX_REASON_BYTES
    assert full.startswith(reason)
    assert "\ufffd" not in reason
    # Only a partial character may be dropped, never more.
    assert len(encoded) > MAX_REASON_BYTES - 4


@pytest.mark.parametrize(
    "char", ["a", "é", "€", "😀"], ids=["1-byte", "2-byte", "3-byte", "4-byte"]
)
@pytest.mark.parametrize("padding", range(4))
@pytest.mark.parametrize("code", [CloseCode.AUTH_INVALID, CloseCode.SLOW_CONSUMER])
def test_long_reason_is_cut_on_a_character_boundary(
    code: CloseCode, char: str, padding: int
) -> None:
    _check_cut(code, "x" * padding + char * 200)


def test_reason_exactly_at_the_limit_is_kept_whole() -> None:
    prefix = "auth_invalid: "
    detail = "d" * (MAX_REASON_BYTES - len(prefix))
    assert close_reason(CloseCode.AUTH_INVALID, detail) == prefix + detail
    assert len(close_reason(CloseCode.AUTH_INVALID, detail + "e").encode()) == MAX_REASON_BYTES


@pytest.mark.parametrize("code", list(CloseCode))
@pytest.mark.parametrize("detail", ["", "token expired", "cid=0f3a", "has: a colon", "é ünïcode"])
def test_parse_reason_round_trip(code: CloseCode, detail: str) -> None:
    assert parse_reason(close_reason(code, detail)) == (CLOSE_CODES[code].slug, detail)


def test_parse_reason_of_foreign_text() -> None:
    assert parse_reason("") == ("", "")
    assert parse_reason("just text") == ("just text", "")


def test_close_connection_carries_code_and_reason() -> None:
    exc = AuthError(CloseCode.AUTH_EXPIRED, "token expired")
    assert isinstance(exc, CloseConnection)
    assert exc.code == 4004
    assert exc.reason == "auth_expired: token expired"
    assert str(exc) == exc.reason
    invalid = SessionInvalid("empty sub")
    assert invalid.code == 4007
    assert invalid.reason == "session_invalid: empty sub"


def test_close_connection_reason_fits_the_frame() -> None:
    exc = CloseConnection(CloseCode.BAD_REQUEST, "€" * 100)
    assert len(exc.reason.encode()) <= MAX_REASON_BYTES
    assert len(str(exc).encode()) <= MAX_REASON_BYTES
