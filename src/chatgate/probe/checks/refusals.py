"""Checks P1-06 to P1-09: the sockets the server must refuse, and the E2E policy."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chatgate.client.transport import AuthMethod
from chatgate.closecodes import CloseCode
from chatgate.e2e import TEST_MARKING_HEADERS
from chatgate.probe import e2e_mode
from chatgate.probe.checks.base import CheckRun, expect_close
from chatgate.probe.context import DEFAULT_AUTH_TIMEOUT_S
from chatgate.probe.credentials import foreign_test_token, forged_token
from chatgate.probe.outcome import Problem, Skip, fail
from chatgate.probe.wire import Wire

_TEST_HEADERS = dict.fromkeys(sorted(TEST_MARKING_HEADERS), "true")


def _grace(seconds: float) -> float:
    """Slack for the network on top of a server-side timeout."""
    return max(2.0, 0.2 * seconds)


async def refused(
    run: CheckRun,
    token: str | None,
    code: CloseCode,
    doing: str,
    *,
    within_s: float | None = None,
    headers: Mapping[str, str] | None = None,
    first_frame: dict[str, Any] | None = None,
) -> str:
    """Upgrade with ``token`` (header) and expect the server to close with ``code``.

    Raises:
        Problem: ``not_rejected`` when a session opened, or the close that came instead.
    """
    async with await Wire.upgrade(run.ctx, token, auth=AuthMethod.HEADER, headers=headers) as wire:
        if first_frame is not None:
            await wire.send(first_frame, doing)
        event = await wire.next_event(doing, within_s)
        elapsed = time.monotonic() - wire.opened_at
    if isinstance(event, dict):
        raise fail("not_rejected", f"{doing}: the server answered {event.get('type')}, not a close")
    return expect_close(event, code, doing, elapsed)


async def auth_missing(run: CheckRun) -> str:
    """P1-06: no credential closes 4001 within the auth timeout."""
    timeout = await run.ctx.limit("auth_timeout_s", DEFAULT_AUTH_TIMEOUT_S)
    return await refused(
        run,
        None,
        CloseCode.AUTH_REQUIRED,
        f"sending nothing for the auth timeout ({timeout:g} s)",
        within_s=timeout + _grace(timeout),
    )


async def auth_invalid(run: CheckRun) -> str:
    """P1-07: a token with a bad signature closes 4003."""
    token = forged_token(run.ctx.credentials.user)
    return await refused(run, token, CloseCode.AUTH_INVALID, "presenting a forged signature")


async def auth_expired(run: CheckRun) -> str:
    """P1-08: an expired token closes 4004."""
    if not run.ctx.credentials.can_mint:
        raise Skip("needs --e2e-key, to mint an expired token the server can verify")
    token = run.ctx.credentials.minted(run.ctx.credentials.user, expired=True)
    try:
        return await refused(run, token, CloseCode.AUTH_EXPIRED, "presenting an expired token")
    except Problem as problem:
        if problem.failure.slug == "e2e_not_enabled":
            raise Skip("E2E mode is off here, so no minted token can be verified") from None
        raise


async def _test_token_for_policy(run: CheckRun, enabled: bool | None) -> str:
    credentials = run.ctx.credentials
    if credentials.can_mint:
        return credentials.minted(credentials.user)
    if not enabled:
        # Where E2E mode is off a test token is refused before its signature is read.
        return foreign_test_token(credentials.user)
    raise Skip("E2E mode is on: checking that a test token is accepted needs --e2e-key")


async def e2e_policy(run: CheckRun) -> str:
    """P1-09: tier and E2E state agree; test headers alone get 4001; test tokens follow E2E."""
    tier, enabled = await e2e_mode.server_state(run.ctx)
    token = await _test_token_for_policy(run, enabled)
    await refused(
        run,
        None,
        CloseCode.AUTH_REQUIRED,
        "sending test-marking headers and no credential",
        headers=_TEST_HEADERS,
        first_frame={"type": "ping"},
    )
    accepted, refusal = await e2e_mode.try_test_token(run.ctx, token)
    verdict = e2e_mode.verdict(tier, enabled, accepted, refusal)
    state = (
        "production (protected)" if tier is None else f"{tier}, E2E {'on' if enabled else 'off'}"
    )
    return f"{state}; test headers alone: 4001; test token {verdict}"
