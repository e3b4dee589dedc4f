"""Running scenarios and checks: timing each, catching what each reproduced, refining it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from chatgate.client.errors import ClientError
from chatgate.probe.context import ProbeContext
from chatgate.probe.outcome import Problem, Result, Skip, Status, fail, failure_for
from chatgate.probe.refine import refine
from chatgate.probe.report import Report
from chatgate.probe.scenarios import SCENARIOS, ProbeState

STEPS_PER_BUDGET = 6
"""A scenario or check may wait this many ``--timeout`` periods in all before it is cut."""


async def run_step(
    ctx: ProbeContext, step_id: str, name: str, body: Callable[[], Awaitable[str]]
) -> Result:
    """Run one scenario or check and turn its ending into a result."""
    started = time.monotonic()
    budget = ctx.timeout * STEPS_PER_BUDGET
    result = Result(step_id, name, Status.PASS)
    opened_before = len(ctx.connections)
    try:
        async with asyncio.timeout(budget):
            result.summary = await body()
    except Skip as skip:
        result.status, result.summary = Status.SKIP, f"skipped: {skip}"
    except Problem as problem:
        result.status, result.failure = Status.FAIL, await refine(problem.failure, ctx)
    except ClientError as error:
        result.status = Status.FAIL
        result.failure = await refine(failure_for(error, doing=name), ctx)
    except TimeoutError:
        result.status = Status.FAIL
        result.failure = fail("timeout", f"{name} did not finish within {budget:g} s").failure
    result.duration_ms = (time.monotonic() - started) * 1000
    result.connection_ids = ctx.connections[opened_before:]
    return result


def _blocked(report: Report, name: str) -> str | None:
    """Why a scenario cannot run after what failed before it, or None."""
    failed = {r.name for r in report.results if r.status is Status.FAIL}
    if "connection" in failed:
        return "skipped: the connection failed"
    if name in {"chat_round_trip", "resume"} and "authentication" in failed:
        return "skipped: authentication failed"
    return None


async def run_probe(ctx: ProbeContext) -> Report:
    """Run the five scenarios in order and return the report."""
    report = Report("scenario", ctx.target.url)
    state = ProbeState()
    for number, name, scenario in SCENARIOS:
        reason = _blocked(report, name)
        if reason is not None:
            report.results.append(Result(number, name, Status.SKIP, reason))
            continue

        async def body(scenario: Callable[..., Awaitable[str]] = scenario) -> str:
            return await scenario(ctx, state)

        result = await run_step(ctx, number, name, body)
        result.details = state.details.get(name, {})
        report.results.append(result)
    report.finish()
    return report
