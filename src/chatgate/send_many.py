"""An ASGI extension of chatgate's server: several text frames in one message, one write.

A server that offers it puts ``SEND_MANY_EXTENSION`` in the scope's
``extensions``; the app may then send ``{"type": SEND_MANY, "texts": [...]}``,
which frames every text in order and writes them with one system call. Under
any other ASGI server the app sends one ``websocket.send`` per frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEND_MANY_EXTENSION = "chatgate.send_many"
SEND_MANY = "chatgate.websocket.send_many"


def offers_send_many(scope: Mapping[str, Any]) -> bool:
    """Whether the server running this socket accepts ``SEND_MANY`` messages."""
    return SEND_MANY_EXTENSION in scope.get("extensions", ())
