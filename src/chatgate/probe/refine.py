"""Sharpening a diagnosis with what the server's HTTP endpoints say.

A 1011 or 1013 says only that something failed; ``/readyz`` names the
dependency. A 403 on the upgrade may come from a WAF, or from the gateway
itself at a path it does not serve; ``/healthz`` tells them apart.
"""

from __future__ import annotations

from http import HTTPStatus

from chatgate.probe.context import ProbeContext
from chatgate.probe.diagnoses import diagnosis
from chatgate.probe.outcome import Failure, Problem

_DEPENDENCY_CAUSES = frozenset({"internal_error", "try_again_later", "http_502", "http_503"})
_FAILING_DEPENDENCIES = {"store": "store_unavailable", "broker": "broker_unavailable"}


async def refine(failure: Failure, ctx: ProbeContext) -> Failure:
    """``failure`` with a sharper diagnosis when the HTTP endpoints can give one."""
    if failure.cause in _DEPENDENCY_CAUSES:
        return await _with_readiness(failure, ctx)
    if failure.http_status == HTTPStatus.FORBIDDEN and not ctx.target.at_socket_path:
        return await _with_path(failure, ctx)
    return failure


async def _with_readiness(failure: Failure, ctx: ProbeContext) -> Failure:
    try:
        answer = await ctx.http.get("/readyz")
    except Problem:
        return failure
    failing = answer.json_object.get("failing")
    if answer.status != HTTPStatus.SERVICE_UNAVAILABLE or not isinstance(failing, list):
        return failure
    for name in failing:
        cause = _FAILING_DEPENDENCIES.get(str(name))
        if cause is not None:
            return failure.with_diagnosis(diagnosis(cause), f"/readyz names {name} as failing")
    return failure


async def _with_path(failure: Failure, ctx: ProbeContext) -> Failure:
    """The gateway never answers 403 at its socket path: if it serves here, the path is wrong."""
    try:
        answer = await ctx.http.get("/healthz")
    except Problem:
        return failure
    if answer.status == HTTPStatus.OK and answer.json_object.get("status") == "ok":
        note = f"the gateway answers /healthz here, so {ctx.target.path} is not its socket path"
        return failure.with_diagnosis(diagnosis("wrong_path"), note)
    return failure
