"""The origin allow-list (CHATGATE_ALLOWED_ORIGINS)."""

from __future__ import annotations

import pytest

from chatgate.settings import load_settings
from chatgate.transport.origins import origin_allowed


@pytest.mark.parametrize("allowed", [None, (), ("https://app.example",)])
def test_no_origin_header_is_allowed(allowed: tuple[str, ...] | None) -> None:
    assert origin_allowed(None, "chat.example", allowed) is True


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("https://chat.example", "chat.example", True),
        ("http://chat.example", "chat.example", True),
        ("https://CHAT.Example", "chat.example", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:9000", False),
        ("http://127.0.0.1", "127.0.0.1:8000", False),
        ("https://evil.example", "chat.example", False),
        ("https://chat.example.evil", "chat.example", False),
        ("https://sub.chat.example", "chat.example", False),
        ("https://chat.example@evil.example", "chat.example", False),
        ("null", "chat.example", False),
        ("", "chat.example", False),
        ("https://chat.example", None, False),
    ],
)
def test_same_host_without_an_allow_list(origin: str, host: str | None, expected: bool) -> None:
    assert origin_allowed(origin, host, None) is expected


ALLOWED = ("https://app.example", "http://localhost:3000/")


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://app.example", True),
        ("https://app.example/", True),
        ("HTTPS://APP.EXAMPLE", True),
        ("http://localhost:3000", True),
        ("http://app.example", False),
        ("https://app.example:8443", False),
        ("https://evil.example", False),
        ("https://app.example.evil", False),
        ("http://localhost:3001", False),
        ("null", False),
    ],
)
def test_allow_list(origin: str, expected: bool) -> None:
    assert origin_allowed(origin, "app.example", ALLOWED) is expected


def test_allow_list_replaces_the_same_host_rule() -> None:
    assert origin_allowed("https://gw.example", "gw.example", ("https://app.example",)) is False


def test_wildcard_allows_every_origin() -> None:
    assert origin_allowed("https://anything.example", "gw.example", ("*",)) is True
    assert origin_allowed("null", None, ("https://a.example", "*")) is True


def test_empty_allow_list_allows_only_non_browser_clients() -> None:
    assert origin_allowed("https://gw.example", "gw.example", ()) is False
    assert origin_allowed(None, "gw.example", ()) is True


def test_settings_parse_the_list() -> None:
    settings = load_settings(allowed_origins=" https://a.example , http://b.example:8080 ,, ")
    assert settings.origins == ("https://a.example", "http://b.example:8080")
    assert origin_allowed("http://b.example:8080", "gw", settings.origins) is True
    assert load_settings().origins is None
