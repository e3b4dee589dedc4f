"""What the gateway reads from a WebSocket upgrade request's headers, in one pass.

The ASGI scope carries the headers as a list of byte pairs. Reading four of
them through a headers mapping walks and decodes that list four times per
handshake; this walks it once and decodes only what it keeps. As with any
headers mapping, the first of repeated headers wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chatgate.e2e import TEST_MARKING_HEADERS

_TEST_MARKING = frozenset(name.encode() for name in TEST_MARKING_HEADERS)
_KEPT = {
    b"authorization": "authorization",
    b"origin": "origin",
    b"host": "host",
    b"user-agent": "user_agent",
}
"""The headers kept as text, by the field of :class:`UpgradeHeaders` that holds each."""


@dataclass(slots=True)
class UpgradeHeaders:
    """The headers of an upgrade request that the gateway acts on."""

    authorization: str | None = field(default=None, repr=False)
    origin: str | None = None
    host: str | None = None
    test_marked: bool = False
    """Whether a header claims a test context (recorded as ``via_headers``; grants nothing)."""
    user_agent: str | None = None


def read_upgrade_headers(raw: Iterable[tuple[bytes, bytes]]) -> UpgradeHeaders:
    """Pick the authorization, origin, host and user-agent headers and any test marking."""
    found = UpgradeHeaders()
    for name, value in raw:
        lowered = name.lower()
        kept = _KEPT.get(lowered)
        if kept is not None:
            if getattr(found, kept) is None:
                setattr(found, kept, value.decode("latin-1"))
        elif lowered in _TEST_MARKING:
            found.test_marked = True
    return found
