"""Finding the credential a client presented on the upgrade request.

Three ways (docs/protocol.md section 2): an ``Authorization: Bearer`` header, a
``bearer.<jwt>`` subprotocol, or (when neither) a first ``auth`` message.
Query-string tokens are never read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError

PROTOCOL_NAME = "chatgate.v1"
_BEARER_PROTOCOL_PREFIX = "bearer."


class CredentialSource(enum.StrEnum):
    """Where the credential came from."""

    HEADER = "header"
    SUBPROTOCOL = "subprotocol"
    MESSAGE = "message"


@dataclass(slots=True)
class Handshake:
    """What the upgrade request said about protocol and credentials."""

    token: str | None = field(repr=False)
    source: CredentialSource | None
    selected_subprotocol: str | None


def selected_subprotocol(subprotocols: list[str]) -> str | None:
    """``chatgate.v1`` when the client offered it (never a ``bearer.`` token), else None."""
    return PROTOCOL_NAME if PROTOCOL_NAME in subprotocols else None


def read_handshake(authorization: str | None, subprotocols: list[str]) -> Handshake:
    """Find the credential and the subprotocol to select.

    Raises:
        AuthError: 4003 when a header or subprotocol credential is malformed, or
            when both are present (ambiguous).
    """
    selected = selected_subprotocol(subprotocols)
    header_token: str | None = None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError(CloseCode.AUTH_INVALID, "Authorization must be 'Bearer <jwt>'")
        header_token = value.strip()
    protocol_tokens = [
        p[len(_BEARER_PROTOCOL_PREFIX) :]
        for p in subprotocols
        if p.startswith(_BEARER_PROTOCOL_PREFIX)
    ]
    if len(protocol_tokens) > 1 or (protocol_tokens and header_token is not None):
        raise AuthError(CloseCode.AUTH_INVALID, "more than one credential presented")
    if header_token is not None:
        return Handshake(header_token, CredentialSource.HEADER, selected)
    if protocol_tokens:
        return Handshake(protocol_tokens[0], CredentialSource.SUBPROTOCOL, selected)
    return Handshake(None, None, selected)
