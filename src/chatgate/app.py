"""The Starlette application: routes, and the lifespan that starts the backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from chatgate.connection import Connection
from chatgate.errors import BrokerUnavailable, StoreUnavailable
from chatgate.gateway import Gateway

_READY_TIMEOUT_S = 2.0


class _ChatSocket:
    """The ``/ws`` endpoint as a plain ASGI app, so a connection sees raw messages."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await Connection(self.gateway, scope, receive, send).serve()


async def _check(probe: Callable[[], Awaitable[None]]) -> str | None:
    """None when ``probe`` answers in time, else why not (never a secret: no URL)."""
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return "timed out"
    except (StoreUnavailable, BrokerUnavailable, OSError) as exc:
        return type(exc).__name__
    return None


def create_app(gateway: Gateway) -> Starlette:
    """Build the ASGI app around a wired gateway."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks = {
            "store": await _check(gateway.store.ping),
            "broker": await _check(gateway.broker.ping),
        }
        failing = [name for name, problem in checks.items() if problem is not None]
        body: dict[str, Any] = {
            "status": "unavailable" if failing else "ready",
            "failing": failing,
            "checks": {name: problem or "ok" for name, problem in checks.items()},
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        await gateway.store.start()
        await gateway.broker.start()
        try:
            yield {"gateway": gateway}
        finally:
            await gateway.runs.shutdown()
            await gateway.broker.close()
            await gateway.store.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            WebSocketRoute("/ws", _ChatSocket(gateway)),
        ],
        lifespan=lifespan,
    )
