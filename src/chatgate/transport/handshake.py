"""From an upgrade request to a complete, counted :class:`~chatgate.chat.session.Session`.

The handshake accepts the upgrade before refusing a credential, so that every
client, a browser included, reads the close code and reason (docs/protocol.md
section 2). It returns a session only once every check has passed and the
connection is counted toward the user's limit; it raises ``CloseConnection``
with the code of the table otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.types import Receive, Scope

from chatgate.auth.credentials import CredentialSource, read_handshake, selected_subprotocol
from chatgate.chat.session import Session, build_session
from chatgate.closecodes import CloseCode
from chatgate.errors import AuthError, CloseConnection
from chatgate.gateway import Gateway
from chatgate.logs import get_logger
from chatgate.protocol import Auth, ProtocolViolation, parse_client_frame
from chatgate.transport.origins import origin_allowed
from chatgate.transport.upgrade import read_upgrade_headers

log = get_logger("chatgate.transport.handshake")


class Disconnected(Exception):
    """The client went away; nothing more to send."""


Accept = Callable[[str | None], Awaitable[None]]
"""Accepts the upgrade, selecting the given subprotocol (or none)."""


@dataclass(slots=True)
class Handshake:
    """One socket's way from the upgrade request to its session."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    accept: Accept
    connection_id: str

    async def run(self) -> Session:
        """Accept the upgrade, authenticate, and count the connection.

        Raises:
            CloseConnection: a check failed; the socket must close with its code.
            Disconnected: the client left during the handshake.
        """
        settings = self.gateway.settings
        upgrade = read_upgrade_headers(self.scope.get("headers", ()))
        subprotocols = self.scope.get("subprotocols", [])
        handshake_error: AuthError | None = None
        token: str | None = None
        source: CredentialSource | None = None
        try:
            found = read_handshake(upgrade.authorization, subprotocols)
            token, source, subprotocol = found.token, found.source, found.selected_subprotocol
        except AuthError as exc:
            handshake_error = exc
            subprotocol = selected_subprotocol(subprotocols)
        await self._receive_connect()
        await self.accept(subprotocol)
        if handshake_error is not None:
            raise handshake_error
        if not origin_allowed(upgrade.origin, upgrade.host, settings.origins):
            raise CloseConnection(CloseCode.ORIGIN_DENIED, "origin not allowed")
        failing = self.gateway.health.failing
        if failing:
            raise CloseConnection(
                CloseCode.TRY_AGAIN_LATER, f"{', '.join(sorted(failing))} unavailable"
            )
        if token is None:
            token, source = await self._await_auth_message(), CredentialSource.MESSAGE
        verified = await self.gateway.verifier.verify_async(token)
        context = (
            self.gateway.e2e.context(via_headers=upgrade.test_marked) if verified.is_test else None
        )
        session = build_session(verified, self.connection_id, context, str(source))
        await self._count(session)
        if context is not None:
            log.info(
                f"E2E CONTEXT DETECTED: {orjson.dumps(context['detection_method']).decode()}",
                connection_id=self.connection_id,
                user_id=session.user_id,
            )
        return session

    async def _receive_connect(self) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            raise Disconnected

    async def _await_auth_message(self) -> str:
        timeout = self.gateway.settings.auth_timeout_s
        try:
            async with asyncio.timeout(timeout):
                message = await self.receive()
        except TimeoutError:
            raise AuthError(CloseCode.AUTH_REQUIRED, f"no credential within {timeout:g}s") from None
        if message["type"] == "websocket.disconnect":
            raise Disconnected
        text = message.get("text")
        try:
            parsed = parse_client_frame(text) if text is not None else None
        except ProtocolViolation:
            parsed = None
        if not isinstance(parsed, Auth):
            raise AuthError(CloseCode.AUTH_REQUIRED, "first message must be auth")
        return parsed.token

    async def _count(self, session: Session) -> None:
        limit = self.gateway.settings.max_connections_per_user
        if not await self.gateway.broker.acquire_connection(
            session.user_id, self.connection_id, limit
        ):
            raise CloseConnection(
                CloseCode.CONNECTION_LIMIT, f"at most {limit} connections per user"
            )
