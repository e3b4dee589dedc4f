"""``chatgate serve``: boot the gateway, say where it listens, serve until SIGTERM."""

from __future__ import annotations

import sys
from typing import Any

import click

from chatgate import __version__
from chatgate.bootstrap import DEV_TOKEN_TTL_S, DEV_USER, Booted, boot
from chatgate.cli.common import config_error
from chatgate.errors import ConfigError
from chatgate.logs import configure_logging
from chatgate.settings import load_settings


def _banner(booted: Booted) -> None:
    settings = booted.settings
    shown_host = "127.0.0.1" if settings.bind_host in {"0.0.0.0", "::"} else settings.bind_host  # noqa: S104
    url = f"ws://{shown_host}:{settings.port}/ws"
    tier = settings.tier_decision
    agent = booted.gateway.agent.name
    click.echo(f"chatgate {__version__}: {tier.tier} tier (from {tier.source}), agent {agent}")
    click.echo(f"  socket URL: {url}")
    if booted.dev_token is not None:
        hours = DEV_TOKEN_TTL_S // 3600
        click.echo("  an ephemeral JWT secret was generated: tokens die with this process")
        click.echo(f"  dev token (user {DEV_USER!r}, valid {hours} h):")
        click.echo(f"    {booted.dev_token}")
        click.echo("  try it:")
        click.echo(f"    python -m websockets {url}")
        click.echo('    then send {"type":"auth","token":"<dev token>"}')
        click.echo('    and {"type":"user_message","id":"1","payload":{"text":"what is 6*7?"}}')
    sys.stdout.flush()


@click.command()
@click.option("--host", default=None, help="Interface to bind (CHATGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (CHATGATE_PORT, PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Start the gateway."""
    from chatgate.transport.server import serve as run_server  # noqa: PLC0415 - keeps `chatgate token` light

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        settings = load_settings(**overrides)
        configure_logging(settings.log_level, settings.log_format)
        booted = boot(settings)
    except ConfigError as exc:
        config_error(exc)
    _banner(booted)
    run_server(booted.app, booted.settings)
