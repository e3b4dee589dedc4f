"""``chatgate serve``: bind the port, boot the gateway, say where it listens, serve until SIGTERM.

The port is bound before the store is started: a process that cannot listen
stops with one line (exit 2) having touched nothing, neither the runs of the
process that holds the port nor the terminal with a token for a port it never
served.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import click

from chatgate import __version__
from chatgate.bootstrap import DEV_TOKEN_TTL_S, DEV_USER, Booted, boot
from chatgate.cli.common import EXIT_CONFIG, config_error
from chatgate.cli.listen import PortUnavailable, listen
from chatgate.errors import ConfigError
from chatgate.logs import configure_logging
from chatgate.settings import load_settings
from chatgate.web.routes import chat_page_enabled


def _banner(booted: Booted, port: int) -> None:
    settings = booted.settings
    shown_host = "127.0.0.1" if settings.bind_host in {"0.0.0.0", "::"} else settings.bind_host  # noqa: S104
    url = f"ws://{shown_host}:{port}/ws"
    tier = settings.tier_decision
    agent = booted.gateway.agent.name
    click.echo(f"chatgate {__version__}: {tier.tier} tier (from {tier.source}), agent {agent}")
    click.echo(f"  socket URL: {url}")
    if booted.dev_token is None:
        sys.stdout.flush()
        return
    hours = DEV_TOKEN_TTL_S // 3600
    if booted.dev_secret_path is None:
        click.echo("  an ephemeral JWT secret was generated: tokens die with this process")
    else:
        kept = booted.dev_secret_path
        click.echo(f"  JWT secret: kept in {kept} (development only, reused by every start)")
    if chat_page_enabled(settings):
        click.echo(f"  chat page: http://{shown_host}:{port}/#token={booted.dev_token}")
    click.echo(f"  dev token (user {DEV_USER!r}, valid {hours} h):")
    click.echo(f"    {booted.dev_token}")
    if booted.dev_secret_path is not None:
        click.echo("  a token for another user: chatgate token --sub <name>")
    click.echo("  try it:")
    click.echo(f"    python -m websockets {url}")
    click.echo('    then send {"type":"auth","token":"<dev token>"}')
    click.echo('    and {"type":"user_message","id":"1","payload":{"text":"what is 6*7?"}}')
    sys.stdout.flush()


def _run(booted: Booted, sockets: list[socket.socket]) -> None:
    """Serve on the bound sockets until SIGTERM or SIGINT, then drain and return."""
    from chatgate.transport.server import serve  # noqa: PLC0415 - keeps `chatgate token` light

    serve(booted.app, booted.settings, sockets)


@click.command()
@click.option("--host", default=None, help="Interface to bind (CHATGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (CHATGATE_PORT, PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Start the gateway."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        settings = load_settings(**overrides)
        configure_logging(settings.log_level, settings.log_format)
        sockets = listen(settings.bind_host, settings.port)
    except ConfigError as exc:
        config_error(exc)
    except PortUnavailable as exc:
        click.echo(f"chatgate: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        booted = boot(settings)
    except ConfigError as exc:
        config_error(exc)
    _banner(booted, int(sockets[0].getsockname()[1]))
    _run(booted, sockets)
