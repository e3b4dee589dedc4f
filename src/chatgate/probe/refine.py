"""Sharpening a diagnosis with what the server's HTTP endpoints say.

A 1011 or 1013 says only that something failed; ``/readyz`` names the
dependency. A 403 on the upgrade may come from a WAF, or from the gateway
itself at a path it does not serve; ``/healthz`` tells them apart.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from chatgate.probe.context import ProbeContext
from chatgate.probe.diagnoses import diagnosis
from chatgate.probe.outcome import Failure, Problem

_DEPENDENCY_CAUSES = frozenset({"internal_error", "try_again_later", "http_502", "http_503"})
_FAILING_DEPENDENCIES = {"store": "store_unavailable", "broker": "broker_unavailable"}
_RECORD_READS = 20
_RECORD_WAIT_S = 0.05
_RECORD_FORBIDDEN = "the server's record of the socket needs --admin-token (CHATGATE_ADMIN_TOKEN)"


async def refine(failure: Failure, ctx: ProbeContext) -> Failure:
    """``failure`` with a sharper diagnosis when the HTTP endpoints can give one."""
    if failure.connection_id is not None:
        failure = await with_server_record(failure, ctx)
    if failure.cause in _DEPENDENCY_CAUSES:
        return await _with_readiness(failure, ctx)
    if failure.http_status == HTTPStatus.FORBIDDEN and not ctx.target.at_socket_path:
        return await _with_path(failure, ctx)
    return failure


async def with_server_record(failure: Failure, ctx: ProbeContext) -> Failure:
    """Add what the server recorded of the failed socket (its close, who closed, frames).

    The record is open outside production and needs ``--admin-token`` in it;
    the server finishes a record just after the close, so it is read again
    briefly until it shows one.
    """
    path = f"/diagnostics/connections/{failure.connection_id}"
    for _ in range(_RECORD_READS):
        try:
            answer = await ctx.http.get(path, token=ctx.admin_token)
        except Problem:
            return failure
        if answer.status == HTTPStatus.FORBIDDEN:
            return replace(failure, what=f"{failure.what}; {_RECORD_FORBIDDEN}")
        record = answer.json_object
        if answer.status != HTTPStatus.OK or not record:
            return failure
        if record.get("closed_at") is not None:
            break
        await asyncio.sleep(_RECORD_WAIT_S)
    return replace(failure, what=f"{failure.what}; {_server_saw(record)}", server_record=record)


def _server_saw(record: dict[str, Any]) -> str:
    if record.get("close_code") is None:
        return f"the server still holds {record.get('connection_id')} open"
    by = "the server" if record.get("closed_by") == "server" else "the client"
    reason = f" ({record['close_reason']})" if record.get("close_reason") else ""
    return (
        f"the server saw {record.get('connection_id')} closed {record['close_code']}{reason} "
        f"by {by} after {record.get('frames_in')} frames in, {record.get('frames_out')} out, "
        f"{record.get('runs')} runs"
    )


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
