"""Handshake options per auth method, and every opening failure as a typed error."""

from __future__ import annotations

import socket
import ssl

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.http11 import Response

from chatgate.client.errors import ConnectFailed, FailureKind, HandshakeRejected, UnexpectedFrame
from chatgate.client.transport import AuthMethod, connect_error, decode_frame, handshake_options


def test_header_auth_sends_a_bearer_header_and_offers_the_protocol() -> None:
    headers, offered = handshake_options("tok", AuthMethod.HEADER, {"X-Trace": "1"})
    assert headers == {"X-Trace": "1", "Authorization": "Bearer tok"}
    assert offered == ["chatgate.v1"]


def test_subprotocol_auth_offers_the_bearer_protocol_after_chatgate() -> None:
    headers, offered = handshake_options("tok", AuthMethod.SUBPROTOCOL)
    assert headers == {}
    assert offered == ["chatgate.v1", "bearer.tok"]


def test_message_auth_sends_nothing_on_the_upgrade() -> None:
    assert handshake_options("tok", AuthMethod.MESSAGE) == ({}, ["chatgate.v1"])
    assert handshake_options(None, AuthMethod.HEADER) == ({}, ["chatgate.v1"])


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (socket.gaierror(-2, "Name or service not known"), FailureKind.DNS),
        (ConnectionRefusedError(111, "Connection refused"), FailureKind.REFUSED),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), FailureKind.TLS),
        (TimeoutError(), FailureKind.TIMEOUT),
        (InvalidMessage("did not receive a valid HTTP response"), FailureKind.HANDSHAKE),
        (ConnectionResetError(104, "Connection reset by peer"), FailureKind.NETWORK),
    ],
)
def test_opening_failures_are_named(exc: BaseException, kind: FailureKind) -> None:
    error = connect_error(exc)
    assert isinstance(error, ConnectFailed)
    assert error.kind is kind
    assert error.detail


def test_an_http_status_keeps_the_headers_and_body() -> None:
    response = Response(503, "Service Unavailable", Headers({"Server": "lb"}), b"down")
    error = connect_error(InvalidStatus(response))
    assert isinstance(error, HandshakeRejected)
    assert (error.status, error.headers, error.body) == (503, {"server": "lb"}, b"down")


def test_other_exceptions_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        connect_error(KeyError("a bug"))


def test_frames_must_be_json_objects() -> None:
    assert decode_frame('{"type": "pong"}') == {"type": "pong"}
    with pytest.raises(UnexpectedFrame):
        decode_frame("[1]")
    with pytest.raises(UnexpectedFrame):
        decode_frame(b"\xff")
