"""The Starlette application: routes, and the lifespan that starts the backends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from chatgate.chat.recovery import Recovery, identity_for
from chatgate.errors import ConfigError
from chatgate.gateway import Gateway
from chatgate.ops.diagnostics import diagnostics_routes
from chatgate.ops.health import readiness_route
from chatgate.startup import StartupFailed, start_with_retry
from chatgate.transport.socket import Connection
from chatgate.web.api import api_routes
from chatgate.web.routes import page_routes

CHAT_PATH = "/ws"


class GatewayApp:
    """The ASGI entry point: the chat socket straight to its handler, the rest to Starlette.

    The socket skips Starlette's middleware and router: every socket would
    otherwise keep their coroutine frames alive for its whole life, and every
    frame it sends would pass through their wrappers.
    """

    def __init__(self, gateway: Gateway, recovery: Recovery) -> None:
        self.gateway = gateway
        self.recovery = recovery
        self.http = Starlette(routes=_routes(gateway), lifespan=self.lifespan)
        # Why startup failed, when it was a known reason: said instead of a traceback.
        self.startup_error: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (lifespan, HTTP or WebSocket)."""
        if scope["type"] == "websocket" and _route_path(scope) == CHAT_PATH:
            await Connection(self.gateway, scope, receive, send).serve()
        elif scope["type"] == "lifespan":
            await self.http(scope, receive, self._lifespan_reply(send))
        else:
            await self.http(scope, receive, send)

    def _lifespan_reply(self, send: Send) -> Send:
        async def reply(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.startup_error is not None:
                # Starlette reports any startup failure as a traceback; a dependency
                # that never came up is an operational fact, said in one line.
                message = {"type": message["type"], "message": self.startup_error}
            await send(message)

        return reply

    @contextlib.asynccontextmanager
    async def lifespan(self, _: object = None) -> AsyncIterator[dict[str, Any]]:
        """Start the store, the broker and the background tasks; stop them on exit.

        An application that mounts the gateway runs this as (part of) its own
        lifespan: Starlette does not run a mounted app's lifespan.

        Raises:
            StartupFailed: the store or the broker did not answer within the startup timeout.
            ConfigError: the store refused the connection (no such database or role).
        """
        gateway, recovery = self.gateway, self.recovery
        timeout = gateway.settings.startup_timeout_s
        try:
            await start_with_retry("store", gateway.store.start, timeout)
            await start_with_retry("broker", gateway.broker.start, timeout)
        except (StartupFailed, ConfigError) as exc:
            # A dependency that never came up, or that refused us (a database
            # or role that does not exist): said in one line.
            self.startup_error = f"chatgate: startup failed: {exc}"
            raise
        await gateway.broker.on_control(gateway.runs.on_control)
        await gateway.health.start()
        await recovery.start()
        try:
            yield {"gateway": gateway}
        finally:
            await gateway.health.stop()
            await gateway.runs.shutdown()
            await recovery.stop()
            await gateway.broker.close()
            await gateway.store.close()


def _route_path(scope: Scope) -> str:
    """The path below the mount point, when the gateway is mounted in another app."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _no_such_socket(websocket: WebSocket) -> None:
    """Refuse an upgrade on an unknown path with 404, not the 403 of a bare close.

    A 403 looks like a proxy or WAF refusing the upgrade; a 404 says the path is wrong.
    """
    await websocket.send_denial_response(
        PlainTextResponse("no WebSocket endpoint here; the chat socket is /ws", status_code=404)
    )


async def _upgrade_required(_: Request) -> PlainTextResponse:
    """Answer a plain HTTP request for the chat socket: it needs the WebSocket upgrade.

    A proxy that drops the ``Upgrade`` header produces exactly this request;
    426 names the problem where a 404 would say the path is wrong.
    """
    return PlainTextResponse(
        f"{CHAT_PATH} is a WebSocket endpoint: connect with a WebSocket client "
        "(a proxy in front must pass the Upgrade and Connection headers)\n",
        status_code=426,
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )


def _routes(gateway: Gateway) -> list[BaseRoute]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return [
        Route(CHAT_PATH, _upgrade_required),
        Route("/healthz", healthz),
        readiness_route(gateway.health),
        *diagnostics_routes(gateway),
        *api_routes(gateway),
        *page_routes(gateway.settings),
        WebSocketRoute("/{path:path}", _no_such_socket),
    ]


def create_app(gateway: Gateway) -> GatewayApp:
    """Build the ASGI app around a wired gateway."""
    recovery = Recovery(
        gateway.store,
        gateway.runs,
        identity=identity_for(gateway.settings),
        heartbeat_s=gateway.settings.instance_heartbeat_s,
    )
    return GatewayApp(gateway, recovery)
