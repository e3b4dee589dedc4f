"""``GET /diagnostics``: how this deployment decided its tier and E2E mode, its limits, its closes.

Beside it, ``GET /metrics`` (Prometheus) and ``GET /diagnostics/connections/{id}``
(a connection's record), under the same access rule.

Never a secret: keys, tokens and URLs with credentials are left out. Open
outside production; in production it needs ``Authorization: Bearer
<CHATGATE_ADMIN_TOKEN>`` (compared in constant time), and with no admin token
configured (an empty one counts as none) it always answers 403.
"""

from __future__ import annotations

import hmac
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chatgate import __version__
from chatgate.e2e import carries_test_headers
from chatgate.gateway import Gateway
from chatgate.settings import Settings
from chatgate.tiers import Tier

_NO_STORE = {"Cache-Control": "no-store"}


def _limits(settings: Settings) -> dict[str, Any]:
    return {
        "max_message_bytes": settings.max_message_bytes,
        "rate_limit_messages": settings.rate_limit_messages,
        "rate_limit_window_s": settings.rate_limit_window_s,
        "max_connections_per_user": settings.max_connections_per_user,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "heartbeat_timeout_s": settings.heartbeat_timeout_s,
        "send_queue_bytes": settings.send_queue_bytes,
        "auth_timeout_s": settings.auth_timeout_s,
        "max_invalid_frames": settings.max_invalid_frames,
        "max_runs_per_connection": settings.max_runs_per_connection,
    }


def admin_allowed(settings: Settings, authorization: str | None) -> bool:
    """Whether a request may read diagnostics (always outside production)."""
    if settings.tier_decision.tier is not Tier.PRODUCTION:
        return True
    if settings.admin_token is None or authorization is None:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = settings.admin_token.get_secret_value().strip().encode()
    # An empty token is no token: "Bearer " must never match it.
    if not expected:
        return False
    return hmac.compare_digest(presented.strip().encode(), expected)


def diagnostics_body(gateway: Gateway, *, via_headers: bool) -> dict[str, Any]:
    """The diagnostics document of docs/protocol.md section 1."""
    settings, decision = gateway.settings, gateway.settings.tier_decision
    context = gateway.e2e.context(via_headers=via_headers)
    return {
        "tier": decision.tier.value,
        "tier_source": decision.source,
        "e2e": {
            "enabled": gateway.e2e.enabled,
            "key_configured": settings.e2e_oauth_simulation_key is not None and gateway.e2e.enabled,
            **context,
        },
        "limits": _limits(settings),
        "store": gateway.store.kind,
        "broker": gateway.broker.kind,
        "version": __version__,
        "closes": gateway.closes.snapshot(),
    }


def _forbidden() -> JSONResponse:
    return JSONResponse(
        {
            "error": "forbidden",
            "detail": "in production, send Authorization: Bearer <CHATGATE_ADMIN_TOKEN>",
        },
        status_code=403,
    )


def diagnostics_routes(gateway: Gateway) -> list[BaseRoute]:
    """The operator endpoints: diagnostics, metrics and connection records."""
    settings = gateway.settings

    def allowed(request: Request) -> bool:
        return admin_allowed(settings, request.headers.get("authorization"))

    async def diagnostics(request: Request) -> JSONResponse:
        if not allowed(request):
            return _forbidden()
        body = diagnostics_body(gateway, via_headers=carries_test_headers(request.headers.keys()))
        return JSONResponse(body, headers=_NO_STORE)

    async def metrics(request: Request) -> Response:
        if not allowed(request):
            return _forbidden()
        return Response(
            gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE
        )

    async def connection(request: Request) -> JSONResponse:
        if not allowed(request):
            return _forbidden()
        record = gateway.records.get(request.path_params["connection_id"])
        if record is None:
            return JSONResponse(
                {"error": "not_found", "detail": "no such connection, or forgotten"},
                status_code=404,
                headers=_NO_STORE,
            )
        return JSONResponse(record.to_json(), headers=_NO_STORE)

    return [
        Route("/diagnostics", diagnostics),
        Route("/diagnostics/connections/{connection_id}", connection),
        Route("/metrics", metrics),
    ]
