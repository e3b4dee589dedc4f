"""The probe's URL: the default, and the HTTP base beside the socket."""

from __future__ import annotations

import pytest

from chatgate.probe.target import LOCAL_URL, BadTarget, Target, default_url


def test_the_default_is_local_without_staging_host() -> None:
    assert default_url({}) == LOCAL_URL == "ws://localhost:8000/ws"
    assert default_url({"STAGING_HOST": "  "}) == LOCAL_URL


def test_staging_host_gives_a_secure_socket() -> None:
    assert default_url({"STAGING_HOST": "chat.staging.example.com"}) == (
        "wss://chat.staging.example.com/ws"
    )
    assert default_url({"STAGING_HOST": "https://chat.example.com/"}) == "wss://chat.example.com/ws"


def test_a_url_is_split_for_each_step() -> None:
    target = Target.parse("wss://chat.example.com/ws")
    assert (target.host, target.port, target.secure, target.path) == (
        "chat.example.com",
        443,
        True,
        "/ws",
    )
    assert target.http_base == "https://chat.example.com"
    assert target.at_socket_path


def test_a_prefixed_mount_keeps_its_prefix_for_http() -> None:
    target = Target.parse("ws://127.0.0.1:8080/chat/ws")
    assert target.port == 8080
    assert target.http_base == "http://127.0.0.1:8080/chat"


def test_a_path_that_is_not_the_socket_is_noticed() -> None:
    assert not Target.parse("ws://h/socket").at_socket_path


@pytest.mark.parametrize(
    "url", ["http://h/ws", "h/ws", "ws:///ws", "ws://h/ws?token=abc", "ws://h:99999/ws"]
)
def test_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(BadTarget):
        Target.parse(url)
