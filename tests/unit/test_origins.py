"""Origins allowed (CHATGATE_ALLOWED_ORIGINS) and the hosts served (CHATGATE_ALLOWED_HOSTS)."""

from __future__ import annotations

import pytest

from chatgate.settings import load_settings
from chatgate.transport.origins import allowed_hosts, host_allowed, host_name, origin_allowed


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


# CHATGATE_ALLOWED_HOSTS: the Host header, against DNS rebinding.


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("chat.example", "chat.example"),
        ("CHAT.Example:8443", "chat.example"),
        ("chat.example.", "chat.example"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        (" localhost ", "localhost"),
    ],
)
def test_host_name(host: str, name: str) -> None:
    assert host_name(host) == name


LOOPBACK_DEFAULT = allowed_hosts(None, "127.0.0.1", None)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("LOCALHOST", True),
        ("127.0.0.2:8000", True),
        ("[::1]:8000", True),
        ("rebind.evil.example:8000", False),
        ("127.0.0.1.nip.io", False),
        ("127.evil.example", False),
        ("localhost.evil.example", False),
        ("10.0.0.5:8000", False),
        ("", False),
        (None, False),
    ],
)
def test_a_loopback_server_serves_only_loopback_names(host: str | None, expected: bool) -> None:
    assert host_allowed(host, LOOPBACK_DEFAULT) is expected


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", ""])  # noqa: S104
def test_a_server_on_every_interface_serves_any_name_by_default(bind: str) -> None:
    hosts = allowed_hosts(None, bind, None)
    assert hosts is None
    assert host_allowed("anything.example", hosts) is True
    assert host_allowed(None, hosts) is True


def test_a_server_on_one_address_serves_it_and_the_allowed_origins_hosts() -> None:
    hosts = allowed_hosts(None, "10.0.0.5", ("https://app.example", "http://b.example:8080", "*"))
    assert hosts == frozenset(
        {"localhost", "127.0.0.1", "::1", "10.0.0.5", "app.example", "b.example"}
    )
    assert host_allowed("10.0.0.5:8000", hosts) is True
    assert host_allowed("app.example", hosts) is True
    assert host_allowed("evil.example", hosts) is False


def test_configured_hosts_replace_the_default() -> None:
    hosts = allowed_hosts(("Chat.Example", "gw.example:443"), "127.0.0.1", None)
    assert hosts == frozenset({"chat.example", "gw.example"})
    assert host_allowed("localhost", hosts) is False
    assert host_allowed("chat.example:8443", hosts) is True
    assert allowed_hosts(("chat.example", "*"), "127.0.0.1", None) is None
