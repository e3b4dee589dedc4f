"""Reading the upgrade request's headers in one pass: names in any case, first one wins."""

from __future__ import annotations

import pytest

from chatgate.e2e import TEST_MARKING_HEADERS
from chatgate.transport.upgrade import UpgradeHeaders, read_upgrade_headers


def test_the_four_headers_are_read_and_nothing_else() -> None:
    raw = [
        (b"host", b"chat.example.com"),
        (b"user-agent", b"probe"),
        (b"authorization", b"Bearer abc.def.ghi"),
        (b"origin", b"https://chat.example.com"),
        (b"sec-websocket-key", b"x3JJHMbDL1EzLkh9GBhXDw=="),
    ]
    assert read_upgrade_headers(raw) == UpgradeHeaders(
        authorization="Bearer abc.def.ghi",
        origin="https://chat.example.com",
        host="chat.example.com",
        test_marked=False,
        user_agent="probe",
    )


def test_no_headers_means_none_of_them() -> None:
    assert read_upgrade_headers([]) == UpgradeHeaders(None, None, None, False)


def test_names_match_in_any_case() -> None:
    raw = [(b"Authorization", b"Bearer t"), (b"ORIGIN", b"https://a"), (b"Host", b"a")]
    found = read_upgrade_headers(raw)
    assert (found.authorization, found.origin, found.host) == ("Bearer t", "https://a", "a")


def test_the_first_of_repeated_headers_wins() -> None:
    raw = [
        (b"authorization", b"Bearer first"),
        (b"authorization", b"Bearer second"),
        (b"origin", b"https://one"),
        (b"origin", b"https://two"),
        (b"host", b"one"),
        (b"host", b"two"),
    ]
    found = read_upgrade_headers(raw)
    assert (found.authorization, found.origin, found.host) == (
        "Bearer first",
        "https://one",
        "one",
    )


def test_values_are_decoded_as_latin_1() -> None:
    found = read_upgrade_headers([(b"origin", "https://caf\u00e9".encode("latin-1"))])
    assert found.origin == "https://caf\u00e9"


@pytest.mark.parametrize("name", sorted(TEST_MARKING_HEADERS))
def test_every_test_marking_header_is_noticed(name: str) -> None:
    assert read_upgrade_headers([(name.upper().encode(), b"1")]).test_marked is True


@pytest.mark.parametrize("name", ["x-e2e-testing", "x-tests", "e2e", "x-environment-name"])
def test_lookalike_names_are_not_test_markings(name: str) -> None:
    assert read_upgrade_headers([(name.encode(), b"1")]).test_marked is False


def test_the_token_stays_out_of_the_repr() -> None:
    found = read_upgrade_headers([(b"authorization", b"Bearer secret.token.value")])
    assert "secret" not in repr(found)
