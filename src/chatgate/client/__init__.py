"""An asyncio client for chatgate, on the ``websockets`` library.

::

    from chatgate.client import Client

    async with Client("wss://chat.example.com/ws", token=jwt) as client:
        run = await client.send_message("what is 6*7?")
        async for event in run:
            print(event.type, event.payload)

Reconnection follows the close-code table of the wire contract; see
:mod:`chatgate.client.connection`. Errors are in :mod:`chatgate.client.errors`.
"""

from chatgate.client.backoff import ReconnectPolicy, retry_for
from chatgate.client.connection import Client, ReconnectAttempt, TokenProvider
from chatgate.client.errors import (
    ClientClosed,
    ClientError,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    Interrupted,
    MessageNotConfirmed,
    ReconnectFailed,
    RequestFailed,
    ServerClosed,
    UnexpectedFrame,
)
from chatgate.client.events import AGENT_EVENT_TYPES, Event, TextAssembly, ThreadCursor
from chatgate.client.runs import RunStream
from chatgate.client.transport import AuthMethod, Opened, open_socket

__all__ = [
    "AGENT_EVENT_TYPES",
    "AuthMethod",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "Event",
    "FailureKind",
    "HandshakeRejected",
    "Interrupted",
    "MessageNotConfirmed",
    "Opened",
    "ReconnectAttempt",
    "ReconnectFailed",
    "ReconnectPolicy",
    "RequestFailed",
    "RunStream",
    "ServerClosed",
    "TextAssembly",
    "ThreadCursor",
    "TokenProvider",
    "UnexpectedFrame",
    "open_socket",
    "retry_for",
]
