"""Every internal of uvicorn and websockets that chatgate's protocol uses still exists.

A new release that moves one fails here, naming the attribute, instead of
failing at the first socket in production.
"""

from __future__ import annotations

import asyncio

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.server import ServerProtocol

from chatgate.transport.uvicorn_http import HTTP_INTERNALS, GatewayHttpProtocol
from chatgate.transport.uvicorn_ws import (
    UVICORN_INTERNALS,
    WEBSOCKETS_INTERNALS,
    GatewayWebSocketProtocol,
)


async def _app(scope, receive, send) -> None:
    return None


@pytest.fixture
def protocol() -> WebSocketsSansIOProtocol:
    config = uvicorn.Config(_app, ws=GatewayWebSocketProtocol, log_config=None)
    config.load()
    return GatewayWebSocketProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.new_event_loop()
    )


@pytest.mark.parametrize("name", UVICORN_INTERNALS)
def test_uvicorn_protocol_still_has(protocol: WebSocketsSansIOProtocol, name: str) -> None:
    assert hasattr(protocol, name), (
        f"uvicorn's WebSocketsSansIOProtocol no longer has {name!r}: "
        "chatgate.transport.uvicorn_ws must follow the new release"
    )


@pytest.mark.parametrize("name", WEBSOCKETS_INTERNALS)
def test_websockets_server_protocol_still_has(
    protocol: WebSocketsSansIOProtocol, name: str
) -> None:
    assert isinstance(protocol.conn, ServerProtocol)
    assert hasattr(protocol.conn, name), (
        f"websockets' ServerProtocol no longer has {name!r}: "
        "chatgate.transport.uvicorn_ws must follow the new release"
    )


def test_the_protocol_sets_every_attribute_uvicorns_init_sets(
    protocol: WebSocketsSansIOProtocol,
) -> None:
    # GatewayWebSocketProtocol.__init__ repeats uvicorn's instead of calling it.
    config = uvicorn.Config(_app, log_config=None)
    config.load()
    theirs = WebSocketsSansIOProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.new_event_loop()
    )
    missing = sorted(set(vars(theirs)) - set(vars(protocol)))
    assert missing == [], (
        f"uvicorn's WebSocketsSansIOProtocol.__init__ now sets {missing}: "
        "GatewayWebSocketProtocol.__init__ must set them too"
    )
    assert isinstance(protocol.conn, ServerProtocol)
    assert protocol.conn.max_message_size == theirs.conn.max_message_size


def test_the_overridden_methods_are_still_called_by_uvicorn() -> None:
    # An override of a method uvicorn renamed would silently never run.
    for name in (
        "connection_made",
        "connection_lost",
        "handle_connect",
        "handle_parser_exception",
        "handle_ping",
        "keepalive_timeout",
        "send_receive_event_to_app",
        "shutdown",
    ):
        assert callable(getattr(WebSocketsSansIOProtocol, name, None)), name


@pytest.fixture
def http_protocol() -> HttpToolsProtocol:
    config = uvicorn.Config(_app, http=GatewayHttpProtocol, log_config=None)
    config.load()
    return GatewayHttpProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.new_event_loop()
    )


@pytest.mark.parametrize("name", HTTP_INTERNALS)
def test_uvicorn_http_protocol_still_has(http_protocol: HttpToolsProtocol, name: str) -> None:
    assert hasattr(http_protocol, name), (
        f"uvicorn's HttpToolsProtocol no longer has {name!r}: "
        "chatgate.transport.uvicorn_http must follow the new release"
    )


def test_the_http_overrides_are_still_called_by_uvicorn() -> None:
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_headers_complete",
        "on_message_complete",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), name


def test_httptools_still_reports_a_refusal_from_a_callback_as_a_parser_error() -> None:
    # GatewayHttpProtocol refuses a request by raising from on_headers_complete.
    class Refusing:
        def on_headers_complete(self) -> None:
            raise LookupError

    parser = httptools.HttpRequestParser(Refusing())
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
