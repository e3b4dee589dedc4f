"""E2E test mode seen from outside: what ``/diagnostics`` reports, and what a test token gets.

docs/protocol.md section 3: a test token is accepted exactly when E2E mode is on,
and refused with 4005 ``e2e_not_enabled`` when it is off; ``/diagnostics``
answers 403 only in production, where E2E mode is never on.
"""

from __future__ import annotations

from http import HTTPStatus

from chatgate.probe import verify
from chatgate.probe.context import ProbeContext
from chatgate.probe.diagnoses import diagnosis
from chatgate.probe.outcome import Problem, fail
from chatgate.probe.wire import Wire


async def server_state(ctx: ProbeContext) -> tuple[str | None, bool | None]:
    """The tier and E2E state ``/diagnostics`` reports; (None, None) when it is protected.

    Raises:
        Problem: ``diagnostics_forbidden`` (the admin token was refused),
            ``diagnostics_unavailable``, or an inconsistent E2E policy.
    """
    answer = await ctx.diagnostics()
    if answer.status == HTTPStatus.FORBIDDEN:
        if ctx.admin_token:
            raise fail("diagnostics_forbidden", "/diagnostics answered 403 to the admin token")
        return None, None
    if answer.status != HTTPStatus.OK:
        raise fail(
            "diagnostics_unavailable",
            f"GET /diagnostics answered {answer.status}",
            http_status=answer.status,
        )
    return verify.e2e_policy(answer.json_object)


async def try_test_token(ctx: ProbeContext, token: str) -> tuple[bool, Problem | None]:
    """Whether a socket with the test token opens; when it does not, the close it got.

    Raises:
        Problem: the socket could not be opened at all (no close code to judge).
    """
    try:
        async with await Wire.open(ctx, token, doing="authenticating with a test token"):
            return True, None
    except Problem as problem:
        if problem.failure.slug is None:
            raise
        return False, problem


def verdict(tier: str | None, enabled: bool | None, accepted: bool, refusal: Problem | None) -> str:
    """How the test token fared, when that agrees with the E2E state.

    ``tier`` None means ``/diagnostics`` was protected: production, E2E off.

    Raises:
        Problem: ``e2e_key_mismatch``, ``e2e_mismatch``, ``e2e_in_production``, or the
            refusal itself when it was for another reason (an origin, a limit).
    """
    refused_slug = refusal.failure.slug if refusal is not None else None
    if accepted and enabled:
        return "accepted"
    if refused_slug == "e2e_not_enabled" and not enabled:
        return "refused with e2e_not_enabled"
    if refusal is not None and refused_slug == "auth_invalid" and enabled:
        raise Problem(refusal.failure.with_diagnosis(diagnosis("e2e_key_mismatch")))
    if refusal is not None and refused_slug not in {"auth_invalid", "e2e_not_enabled"}:
        raise refusal
    shown = "accepted" if accepted else f"refused ({refusal.failure.reason if refusal else ''})"
    cause = "e2e_in_production" if accepted and tier is None else "e2e_mismatch"
    raise fail(cause, f"E2E mode is {'on' if enabled else 'off'}, but a test token was {shown}")
