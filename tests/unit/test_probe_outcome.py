"""Client errors become failures with the evidence and the diagnosis."""

from __future__ import annotations

from chatgate.client.errors import (
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    ServerClosed,
    UnexpectedFrame,
)
from chatgate.probe.outcome import failure_for


def test_a_close_keeps_code_slug_reason_and_timing() -> None:
    found = failure_for(
        ServerClosed(4006, "origin_denied: origin not allowed"), doing="opening", elapsed_s=0.25
    )
    assert (found.cause, found.code, found.slug) == ("origin_denied", 4006, "origin_denied")
    assert found.reason == "origin_denied: origin not allowed"
    assert "0.25 s" in found.what
    assert "CHATGATE_ALLOWED_ORIGINS" in found.likely


def test_a_code_outside_the_table_is_still_reported() -> None:
    found = failure_for(ServerClosed(4999, "custom: x"), doing="reading")
    assert (found.cause, found.code) == ("close_4999", 4999)


def test_a_drop_is_timed_and_matched() -> None:
    found = failure_for(ConnectionLost(), doing="waiting", elapsed_s=30.4, idle_s=2.0)
    assert (found.cause, found.code) == ("lb_backend_timeout", 1006)
    assert "30.40 s after the upgrade" in found.what
    assert "2.00 s after the last frame" in found.what


def test_an_http_refusal_keeps_only_the_telling_headers() -> None:
    error = HandshakeRejected(
        502, {"Server": "gfe", "Set-Cookie": "session=secret", "Via": "1.1 google"}, b"<html>"
    )
    found = failure_for(error, doing="upgrading")
    assert (found.cause, found.http_status) == ("http_502", 502)
    assert found.headers == {"server": "gfe", "via": "1.1 google"}
    assert found.body == "<html>"


def test_network_failures() -> None:
    for kind, cause in [
        (FailureKind.DNS, "dns_failure"),
        (FailureKind.REFUSED, "connection_refused"),
        (FailureKind.TLS, "tls_error"),
        (FailureKind.TIMEOUT, "timeout"),
        (FailureKind.HANDSHAKE, "handshake_failed"),
        (FailureKind.NETWORK, "network_error"),
    ]:
        assert failure_for(ConnectFailed(kind, "d"), doing="x").cause == cause
    assert failure_for(UnexpectedFrame("no"), doing="x").cause == "unexpected_frame"
