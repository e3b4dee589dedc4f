"""Exceptions raised by the client SDK.

The tree::

    ClientError
    ├── ConnectFailed          no socket: DNS, refused, TLS, timeout, broken handshake
    ├── HandshakeRejected      the upgrade got an HTTP status instead of 101
    ├── ServerClosed           the server closed with a close code (code, slug, reason)
    ├── ConnectionLost         the TCP connection dropped without a close frame (1006)
    ├── UnexpectedFrame        the server sent something the protocol does not allow here
    ├── RequestFailed          an ``error`` frame answered a request (code, message)
    ├── Interrupted            the connection dropped before a request was answered
    │   └── MessageNotConfirmed    ... before the ``message_ack`` of a user message
    ├── ReconnectFailed        every reconnection attempt failed; carries the last error
    └── ClientClosed           the client was closed by its owner

Close codes, slugs and what they mean come from :mod:`chatgate.closecodes`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from chatgate.closecodes import CloseInfo, Retry, info, parse_reason

ABNORMAL_CLOSURE = 1006
"""RFC 6455: never sent on the wire; reported when a connection ends without a close frame."""


class ClientError(Exception):
    """Root of every exception the client SDK raises."""


class FailureKind(enum.StrEnum):
    """Where opening a socket failed, before any WebSocket frame."""

    DNS = "dns"
    REFUSED = "refused"
    TLS = "tls"
    TIMEOUT = "timeout"
    HANDSHAKE = "handshake"
    NETWORK = "network"


class ConnectFailed(ClientError):
    """No socket could be opened; ``kind`` says at which step."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class HandshakeRejected(ClientError):
    """The server (or a proxy in front of it) answered the upgrade with an HTTP status."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status
        self.headers = dict(headers)
        self.body = body


class ServerClosed(ClientError):
    """The server closed the socket with ``code`` and ``reason`` (``"<slug>: <detail>"``)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        self.info: CloseInfo | None = info(code)
        slug, detail = parse_reason(reason)
        # The table's slug wins: a reason cut by a proxy must not rename the code.
        self.slug = self.info.slug if self.info is not None else slug
        self.detail = detail if slug == self.slug else reason
        super().__init__(f"closed {code} {self.slug}: {self.detail}".rstrip(": "))

    @property
    def retry(self) -> Retry:
        """What the close-code table says a client should do; unknown codes are not retried."""
        return self.info.retry if self.info is not None else Retry.NEVER


class ConnectionLost(ClientError):
    """The connection ended without a close frame (code 1006): a network drop or a proxy."""

    code = ABNORMAL_CLOSURE

    def __init__(self, detail: str = "no close frame") -> None:
        super().__init__(f"connection lost: {detail}")
        self.detail = detail


class UnexpectedFrame(ClientError):
    """The server sent a frame the protocol does not allow at this point."""


class RequestFailed(ClientError):
    """The server answered a request with an ``error`` frame; the socket stays open."""

    def __init__(self, code: str, message: str, correlation_id: str | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.correlation_id = correlation_id


class Interrupted(ClientError):
    """The connection dropped before the answer came; ``cause`` says how it ended."""

    def __init__(self, cause: ClientError) -> None:
        super().__init__(f"interrupted: {cause}")
        self.cause = cause


class MessageNotConfirmed(Interrupted):
    """The connection dropped before ``message_ack``: the server may or may not have the message."""


class ReconnectFailed(ClientError):
    """Reconnecting gave up after ``attempts`` tries; ``last_error`` is the final failure."""

    def __init__(self, attempts: int, last_error: ClientError) -> None:
        super().__init__(f"gave up after {attempts} reconnection attempts: {last_error}")
        self.attempts = attempts
        self.last_error = last_error

    @property
    def code(self) -> int | None:
        """The close code of the last failure, when the connection ended with one."""
        if isinstance(self.last_error, ServerClosed | ConnectionLost):
            return self.last_error.code
        return None


class ClientClosed(ClientError):
    """The client was closed by its owner; no more requests can be made."""
