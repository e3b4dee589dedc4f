"""The 22 deployment checks of ``chatgate check``, in order, and the runner that selects them."""

from __future__ import annotations

from chatgate.probe.budgets import Budgets
from chatgate.probe.checks import access, chat, limits, refusals, scale
from chatgate.probe.checks.base import Check, CheckRun, Need
from chatgate.probe.context import ProbeContext
from chatgate.probe.outcome import Result, Status
from chatgate.probe.report import Report
from chatgate.probe.runner import run_step

CHECKS: tuple[Check, ...] = (
    Check("P1-01", "health", Need.NOTHING, access.health, "/healthz and /readyz 200"),
    Check("P1-02", "handshake", Need.NOTHING, access.handshake, "chatgate.v1, no token echoed"),
    Check("P1-03", "auth_header", Need.CREDENTIAL, access.auth_header, "header token"),
    Check("P1-04", "auth_subprotocol", Need.CREDENTIAL, access.auth_subprotocol, "subprotocol"),
    Check("P1-05", "auth_message", Need.CREDENTIAL, access.auth_message, "first auth message"),
    Check("P1-06", "auth_missing", Need.NOTHING, refusals.auth_missing, "4001 in time"),
    Check("P1-07", "auth_invalid", Need.NOTHING, refusals.auth_invalid, "bad signature: 4003"),
    Check("P1-08", "auth_expired", Need.MINTING, refusals.auth_expired, "expired token: 4004"),
    Check("P1-09", "e2e_policy", Need.NOTHING, refusals.e2e_policy, "E2E state agrees"),
    Check("P1-10", "heartbeat", Need.CREDENTIAL, chat.heartbeat, "pong within 1 s"),
    Check("P1-11", "message_ack", Need.CREDENTIAL, chat.message_ack, "ack with ids"),
    Check("P1-12", "agent_events", Need.CREDENTIAL, chat.agent_events, "five events in order"),
    Check("P1-13", "event_ids", Need.CREDENTIAL, chat.event_ids, "ids rise by one"),
    Check("P1-14", "thread_continuity", Need.CREDENTIAL, chat.thread_continuity, "history"),
    Check("P1-15", "resume", Need.CREDENTIAL, chat.resume, "missed events once"),
    Check("P1-16", "isolation", Need.MINTING, scale.isolation, "no foreign frame"),
    Check("P1-17", "concurrency", Need.MINTING, scale.concurrency, "20 sockets at once"),
    Check("P1-18", "malformed_json", Need.CREDENTIAL, limits.malformed_json, "invalid_json"),
    Check("P1-19", "unknown_type", Need.CREDENTIAL, limits.unknown_type, "unknown_type"),
    Check("P1-20", "oversize", Need.CREDENTIAL, limits.oversize, "1009"),
    Check("P1-21", "rate_limit", Need.CREDENTIAL, limits.rate_limit, "rate_limited"),
    Check("P1-22", "latency", Need.CREDENTIAL, scale.latency, "p95 within budget"),
)


class UnknownCheck(ValueError):
    """``--only`` named a check that does not exist (a usage error)."""


def select(only: str | None) -> list[Check]:
    """The checks ``--only`` names (ids or names, comma-separated), in table order; all by default.

    Raises:
        UnknownCheck: a name matches no check.
    """
    if not only:
        return list(CHECKS)
    asked = [name.strip() for name in only.split(",") if name.strip()]
    wanted = {name.lower() for name in asked}
    known = {c.id.lower() for c in CHECKS} | {c.name.lower() for c in CHECKS}
    unknown = [name for name in asked if name.lower() not in known]
    if unknown:
        raise UnknownCheck(f"no check named {', '.join(unknown)}")
    return [c for c in CHECKS if c.id.lower() in wanted or c.name.lower() in wanted]


def _unmet(check: Check, run: CheckRun) -> str | None:
    credentials = run.ctx.credentials
    if check.needs is Need.MINTING and not credentials.can_mint:
        return f"skipped: needs {Need.MINTING.value} (several users or expired tokens)"
    if check.needs is Need.CREDENTIAL and not credentials.has_token:
        return f"skipped: needs {Need.CREDENTIAL.value}"
    return None


async def run_checks(ctx: ProbeContext, checks: list[Check], budgets: Budgets) -> Report:
    """Run ``checks`` in order and return the report."""
    report = Report("check", ctx.target.url)
    run = CheckRun(ctx, budgets)
    for check in checks:
        reason = _unmet(check, run)
        if reason is not None:
            report.results.append(Result(check.id, check.name, Status.SKIP, reason))
            continue

        async def body(check: Check = check) -> str:
            return await check.body(run)

        report.results.append(await run_step(ctx, check.id, check.name, body))
    report.finish()
    return report


__all__ = ["CHECKS", "Budgets", "Check", "UnknownCheck", "run_checks", "select"]
