"""An ASGI extension of chatgate's server: several text frames in one message, one write.

A server that offers it puts ``SEND_MANY_EXTENSION`` in the scope's
``extensions``; the app may then send ``{"type": SEND_MANY, "frames": [...]}``,
where each item is the UTF-8 payload of one text frame (bytes), and the server
frames them in order and writes them with one system call. Under any other
ASGI server the app sends one ``websocket.send`` per frame.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

_FIN_TEXT = 0x81
_LENGTH_16 = 126
_LENGTH_64 = 127
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack

SEND_MANY_EXTENSION = "chatgate.send_many"
SEND_MANY = "chatgate.websocket.send_many"


def offers_send_many(scope: Mapping[str, Any]) -> bool:
    """Whether the server running this socket accepts ``SEND_MANY`` messages."""
    return SEND_MANY_EXTENSION in scope.get("extensions", ())


def serialize_text_frames(payloads: Iterable[bytes]) -> bytes:
    """One unfragmented, unmasked text frame per UTF-8 payload (RFC 6455 section 5.2).

    What a server writes when no extension (compression) is in use; websockets'
    general serializer builds a frame object per frame and costs six times as much.
    """
    parts: list[bytes] = []
    append = parts.append
    for data in payloads:
        size = len(data)
        if size < _LENGTH_16:
            append(bytes((_FIN_TEXT, size)))
        elif size <= 0xFFFF:  # noqa: PLR2004 - the largest 16-bit length
            append(_HEADER_16(_FIN_TEXT, _LENGTH_16, size))
        else:
            append(_HEADER_64(_FIN_TEXT, _LENGTH_64, size))
        append(data)
    return b"".join(parts)
