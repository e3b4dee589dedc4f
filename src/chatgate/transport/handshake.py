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
from dataclasses import dataclass, field

import orjson
from starlette.types import Receive, Scope

from chatgate.auth.credentials import CredentialSource, read_handshake, selected_subprotocol
from chatgate.chat.session import Session, build_session
from chatgate.closecodes import MAX_REASON_BYTES, CloseCode, close_reason
from chatgate.errors import AuthError, CloseConnection
from chatgate.gateway import Gateway
from chatgate.logs import get_logger
from chatgate.ops.records import ConnectionRecord
from chatgate.protocol import Auth, ErrorCode, ProtocolViolation, parse_client_frame
from chatgate.transport.origins import origin_allowed
from chatgate.transport.upgrade import UpgradeHeaders, read_upgrade_headers

log = get_logger("chatgate.transport.handshake")

QUERY_STRING_REFUSAL = (
    "query-string tokens are never read; send it in a Bearer header, "
    "bearer.<jwt> subprotocol or auth message"
)
_QUERY_TOKEN_NAMES = frozenset({b"token", b"access_token", b"jwt", b"auth"})
_ORIGIN_TEMPLATE = "{} not allowed; see CHATGATE_ALLOWED_ORIGINS"
_LOGGED_ORIGIN_CHARS = 200


def origin_denied_detail(origin: str | None) -> str:
    """The 4006 detail: the origin, cut to fit the reason limit, and the setting to change."""
    room = (
        MAX_REASON_BYTES
        - len(close_reason(CloseCode.ORIGIN_DENIED, "").encode())
        - len(": ")
        - len(_ORIGIN_TEMPLATE.format("").encode())
    )
    shown = origin or ""
    if len(shown.encode()) > room:
        shown = shown.encode()[: room - 3].decode(errors="ignore") + "..."
    return _ORIGIN_TEMPLATE.format(shown)


def carries_query_token(query_string: bytes) -> bool:
    """Whether the upgrade URL's query names a token (which is never read, nor logged)."""
    for pair in query_string.split(b"&"):
        name = pair.partition(b"=")[0].lower()
        if name in _QUERY_TOKEN_NAMES:
            return True
    return False


def _json_error(text: str) -> str:
    """The 4000 detail for a first frame that is not JSON: where the parser stopped."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"first frame is not JSON: {exc}"
    return "first frame is not JSON"


class Disconnected(Exception):
    """The client went away; nothing more to send."""


Accept = Callable[[str | None], Awaitable[None]]
"""Accepts the upgrade, selecting the given subprotocol (or none)."""


@dataclass(frozen=True, slots=True)
class _Offered:
    """The subprotocol to select, and the credential found (token, source) or why not."""

    selected_subprotocol: str | None
    credential: tuple[str | None, CredentialSource | None] | AuthError = field(repr=False)


@dataclass(slots=True)
class Handshake:
    """One socket's way from the upgrade request to its session."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    accept: Accept
    connection_id: str
    record: ConnectionRecord | None = None
    """The connection's record: the handshake notes the user agent and the credential's source."""

    async def run(self) -> Session:
        """Accept the upgrade, authenticate, and count the connection.

        Raises:
            CloseConnection: a check failed; the socket must close with its code.
            Disconnected: the client left during the handshake.
        """
        upgrade = read_upgrade_headers(self.scope.get("headers", ()))
        record = self.record
        if record is not None:
            record.set_user_agent(upgrade.user_agent)
        offered = self._credential(upgrade.authorization)
        await self._receive_connect()
        await self.accept(offered.selected_subprotocol)
        if isinstance(offered.credential, AuthError):
            raise offered.credential
        self._admit(upgrade)
        token, source = offered.credential
        if token is None:
            if carries_query_token(self.scope.get("query_string", b"")):
                raise AuthError(CloseCode.AUTH_REQUIRED, QUERY_STRING_REFUSAL)
            token, source = await self._await_auth_message(), CredentialSource.MESSAGE
        if record is not None:
            record.auth_method = str(source)
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

    def _credential(self, authorization: str | None) -> _Offered:
        """What the upgrade offers: the subprotocol to select, and the credential or its error."""
        subprotocols = self.scope.get("subprotocols", [])
        try:
            found = read_handshake(authorization, subprotocols)
        except AuthError as exc:
            return _Offered(selected_subprotocol(subprotocols), exc)
        if found.selected_subprotocol is None and found.source is CredentialSource.SUBPROTOCOL:
            # The token cannot be selected (it would be echoed), so nothing is:
            # a browser then fails the handshake before it can read a close code.
            log.info(
                "bearer subprotocol offered without chatgate.v1: a browser will fail "
                "this handshake; offer both",
                connection_id=self.connection_id,
            )
        return _Offered(found.selected_subprotocol, (found.token, found.source))

    def _admit(self, upgrade: UpgradeHeaders) -> None:
        """Refuse a foreign origin, or any socket while a dependency is down."""
        settings = self.gateway.settings
        if not origin_allowed(upgrade.origin, upgrade.host, settings.origins):
            log.info(
                "origin not allowed",
                origin=(upgrade.origin or "")[:_LOGGED_ORIGIN_CHARS],
                host=upgrade.host,
                allowed=settings.allowed_origins or "(the socket's host)",
                connection_id=self.connection_id,
            )
            raise CloseConnection(CloseCode.ORIGIN_DENIED, origin_denied_detail(upgrade.origin))
        failing = self.gateway.health.failing
        if failing:
            raise CloseConnection(
                CloseCode.TRY_AGAIN_LATER, f"{', '.join(sorted(failing))} unavailable"
            )

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
        except ProtocolViolation as exc:
            if exc.code is ErrorCode.INVALID_JSON and text is not None:
                raise CloseConnection(CloseCode.BAD_REQUEST, _json_error(text)) from None
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
