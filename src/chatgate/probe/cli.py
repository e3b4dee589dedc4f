"""The ``chatgate probe`` and ``chatgate check`` commands (added to the ``chatgate`` group).

Exit codes: 0 when everything ran passed (or was skipped), 1 when a failure
was reproduced, 2 for usage errors (click's own, a bad URL, an unknown check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from chatgate.probe.budgets import P95_COMPLETED_MS, P95_STARTED_MS, Budgets
from chatgate.probe.credentials import DEFAULT_USER

F = TypeVar("F", bound=Callable[..., Any])

_SHARED_OPTIONS = (
    click.argument("url", required=False),
    click.option(
        "--token",
        envvar="CHATGATE_PROBE_TOKEN",
        default=None,
        help="A JWT to authenticate with (or CHATGATE_PROBE_TOKEN); never printed.",
    ),
    click.option(
        "--e2e-key",
        envvar="E2E_OAUTH_SIMULATION_KEY",
        default=None,
        help="Mint E2E test tokens with this key (or E2E_OAUTH_SIMULATION_KEY); never printed.",
    ),
    click.option(
        "--user",
        default=DEFAULT_USER,
        show_default=True,
        help="Subject of minted test tokens.",
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write the report as JSON to FILE.",
    ),
    click.option(
        "--ascii",
        "ascii_only",
        is_flag=True,
        help="ASCII output only (automatic when the console cannot encode the symbols).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        help="Seconds to wait for each answer.",
    ),
    click.option("--origin", default=None, help="Send this Origin header, as a browser would."),
    click.option(
        "--admin-token",
        envvar="CHATGATE_ADMIN_TOKEN",
        default=None,
        help="Bearer token for /diagnostics in production (or CHATGATE_ADMIN_TOKEN).",
    ),
)


def _shared(function: F) -> F:
    for decorate in reversed(_SHARED_OPTIONS):
        function = decorate(function)
    return function


@click.command()
@_shared
def probe(**options: Any) -> None:
    """Reproduce a failing connection to URL and name its cause.

    URL defaults to wss://$STAGING_HOST/ws when STAGING_HOST is set, else
    ws://localhost:8000/ws. Scenarios: connection, authentication, E2E
    detection, chat round trip, resume.
    """
    # Imported here so that `chatgate serve` and `chatgate token` stay light.
    from chatgate.probe.commands import Options, probe_command  # noqa: PLC0415

    sys.exit(probe_command(Options(**options)))


@click.command()
@_shared
@click.option("--only", default=None, help="Comma-separated check ids or names (P1-12,health).")
@click.option(
    "--p95-started-ms",
    type=click.FloatRange(min=0),
    default=P95_STARTED_MS,
    show_default=True,
    help="P1-22 budget: p95 latency to agent_started.",
)
@click.option(
    "--p95-completed-ms",
    type=click.FloatRange(min=0),
    default=P95_COMPLETED_MS,
    show_default=True,
    help="P1-22 budget: p95 latency to agent_completed.",
)
def check(only: str | None, p95_started_ms: float, p95_completed_ms: float, **options: Any) -> None:
    """Run the 22 deployment checks against URL (PASS / FAIL / SKIP each).

    Checks that need several users or an expired token run with --e2e-key
    and are skipped otherwise.
    """
    from chatgate.probe.commands import Options, check_command  # noqa: PLC0415 - as in probe

    budgets = Budgets(started_ms=p95_started_ms, completed_ms=p95_completed_ms)
    sys.exit(check_command(Options(**options), only, budgets))
