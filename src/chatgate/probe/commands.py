"""``chatgate probe`` and ``chatgate check`` behind the command line: options in, exit code out."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from chatgate.probe.checks import Budgets, UnknownCheck, run_checks, select
from chatgate.probe.console import Console
from chatgate.probe.context import ProbeContext
from chatgate.probe.credentials import DEFAULT_USER, Credentials
from chatgate.probe.http import Http
from chatgate.probe.report import EXIT_USAGE, Report, Scrubber, print_report, save_json
from chatgate.probe.runner import run_probe
from chatgate.probe.target import BadTarget, Target, default_url


@dataclass(frozen=True, slots=True)
class Options:
    """What both commands take."""

    url: str | None = None
    token: str | None = field(default=None, repr=False)
    e2e_key: str | None = field(default=None, repr=False)
    user: str = DEFAULT_USER
    json_path: Path | None = None
    ascii_only: bool = False
    timeout: float = 10.0
    origin: str | None = None
    admin_token: str | None = field(default=None, repr=False)


def _context(options: Options) -> ProbeContext:
    target = Target.parse(options.url or default_url())
    return ProbeContext(
        target=target,
        credentials=Credentials(options.token, options.e2e_key, options.user),
        http=Http(target, options.timeout),
        timeout=options.timeout,
        origin=options.origin,
        admin_token=options.admin_token,
    )


def _usage(message: str, err: TextIO) -> int:
    err.write(f"chatgate: {message}\n")
    return EXIT_USAGE


def _finish(report: Report, ctx: ProbeContext, options: Options, stream: TextIO) -> int:
    scrubber = Scrubber(ctx.secrets())
    print_report(report, Console(stream, ascii_only=options.ascii_only), scrubber)
    if options.json_path is not None:
        save_json(report, options.json_path, scrubber)
    return report.exit_code


async def _with_http(ctx: ProbeContext, work: Coroutine[Any, Any, Report]) -> Report:
    try:
        return await work
    finally:
        await ctx.http.aclose()


async def probe_async(
    options: Options, stream: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run the five scenarios; print and save the report; return 0, 1, or 2 for a bad URL."""
    try:
        ctx = _context(options)
    except BadTarget as exc:
        return _usage(str(exc), err)
    report = await _with_http(ctx, run_probe(ctx))
    return _finish(report, ctx, options, stream)


async def check_async(
    options: Options,
    only: str | None = None,
    budgets: Budgets | None = None,
    stream: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run the selected checks; print and save the report; return 0, 1, or 2 for bad usage."""
    try:
        checks = select(only)
        ctx = _context(options)
    except (BadTarget, UnknownCheck) as exc:
        return _usage(str(exc), err)
    report = await _with_http(ctx, run_checks(ctx, checks, budgets or Budgets()))
    return _finish(report, ctx, options, stream)


def probe_command(options: Options) -> int:
    """``chatgate probe``: :func:`probe_async` on a new event loop."""
    return asyncio.run(probe_async(options))


def check_command(options: Options, only: str | None = None, budgets: Budgets | None = None) -> int:
    """``chatgate check``: :func:`check_async` on a new event loop."""
    return asyncio.run(check_async(options, only, budgets))
