"""Checks P1-01 to P1-05: health, the handshake, and the three ways to authenticate."""

from __future__ import annotations

import secrets
from http import HTTPStatus

from chatgate.client.transport import PROTOCOL, AuthMethod
from chatgate.probe.checks.base import CheckRun
from chatgate.probe.credentials import expected_user
from chatgate.probe.outcome import fail
from chatgate.probe.wire import Wire


async def health(run: CheckRun) -> str:
    """P1-01: ``/healthz`` and ``/readyz`` answer 200."""
    statuses = {}
    for path in ("/healthz", "/readyz"):
        answer = await run.ctx.http.get(path)
        statuses[path] = answer.status
        if answer.status != HTTPStatus.OK:
            raise fail(
                "health_failed",
                f"GET {path} answered {answer.status}: {answer.text[:200]}",
                http_status=answer.status,
            )
    return ", ".join(f"{path} {status}" for path, status in statuses.items())


async def handshake(run: CheckRun) -> str:
    """P1-02: the upgrade completes, ``chatgate.v1`` is selected, and no token comes back."""
    # Any string shows whether the server echoes the offered credential; a
    # real token is not needed, and a junk one cannot open a session.
    token = run.ctx.credentials.primary() or f"probe-{secrets.token_urlsafe(16)}"
    async with await Wire.upgrade(run.ctx, token, auth=AuthMethod.SUBPROTOCOL) as wire:
        selected = wire.ws.subprotocol
        response = wire.ws.response
        headers = dict(response.headers.raw_items()) if response is not None else {}
    if selected != PROTOCOL:
        raise fail("subprotocol_not_selected", f"offered {PROTOCOL}, got {selected!r}")
    echoed = [name for name, value in headers.items() if token in value]
    if echoed:
        raise fail("token_echoed", f"the upgrade answer carries the token in {echoed}")
    return f"101 in {wire.upgrade_s * 1000:.0f} ms, subprotocol {selected}, no token echoed"


async def _authenticated(run: CheckRun, auth: AuthMethod) -> str:
    token = run.token()
    async with await Wire.open(run.ctx, token, auth=auth, doing=f"authenticating ({auth})") as wire:
        user = wire.established.get("user_id")
    expected = expected_user(token)
    if expected is not None and user != expected:
        raise fail("wrong_user", f"the token's subject is {expected!r}, the session's {user!r}")
    return f"connection_established for {user}"


async def auth_header(run: CheckRun) -> str:
    """P1-03: an ``Authorization: Bearer`` token opens a session for its user."""
    return await _authenticated(run, AuthMethod.HEADER)


async def auth_subprotocol(run: CheckRun) -> str:
    """P1-04: a ``bearer.<jwt>`` subprotocol opens a session for its user."""
    return await _authenticated(run, AuthMethod.SUBPROTOCOL)


async def auth_message(run: CheckRun) -> str:
    """P1-05: a first ``auth`` message opens a session for its user."""
    return await _authenticated(run, AuthMethod.MESSAGE)
