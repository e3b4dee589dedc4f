"""The ``chatgate`` command: ``serve``, ``token``, ``migrate``, ``probe`` and ``check``."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from chatgate import __version__
from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.bootstrap import DEV_TOKEN_TTL_S, DEV_USER, Booted, boot
from chatgate.errors import ConfigError
from chatgate.logs import configure_logging
from chatgate.probe.cli import check, probe
from chatgate.settings import load_settings

EXIT_CONFIG = 2


def _config_error(exc: ConfigError) -> NoReturn:
    click.echo(f"chatgate: configuration error: {exc}", err=True)
    sys.exit(EXIT_CONFIG)


@click.group()
@click.version_option(__version__, prog_name="chatgate")
def main() -> None:
    """chatgate: a WebSocket gateway for AI-agent chat."""


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


@main.command()
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
        _config_error(exc)
    _banner(booted)
    run_server(booted.app, booted.settings)


@main.command()
@click.option("--sub", required=True, help="The subject (user id) of the token.")
@click.option(
    "--ttl", default=3600, show_default=True, help="Seconds to live; negative for an expired token."
)
@click.option("--aud", default=None, help="Audience claim.")
@click.option("--iss", default=None, help="Issuer claim.")
@click.option("--e2e", is_flag=True, help="Mint an E2E test token with E2E_OAUTH_SIMULATION_KEY.")
def token(sub: str, ttl: int, aud: str | None, iss: str | None, e2e: bool) -> None:
    """Mint a token signed with CHATGATE_JWT_SECRET (or, with --e2e, E2E_OAUTH_SIMULATION_KEY)."""
    variable = "E2E_OAUTH_SIMULATION_KEY" if e2e else "CHATGATE_JWT_SECRET"
    key = os.environ.get(variable)
    if not key:
        click.echo(f"chatgate: {variable} is not set", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        minted = (
            mint_test_token(key, sub, ttl_s=ttl)
            if e2e
            else mint_token(key, sub, ttl_s=ttl, audience=aud, issuer=iss)
        )
    except ValueError as exc:
        click.echo(f"chatgate: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(minted)


EXIT_STORE_UNAVAILABLE = 1


@main.command()
def migrate() -> None:
    """Bring the schema of CHATGATE_DATABASE_URL up to date, then exit."""
    import asyncio  # noqa: PLC0415 - keeps `chatgate token` light

    from chatgate.errors import StoreUnavailable  # noqa: PLC0415 - same
    from chatgate.store.base import open_store  # noqa: PLC0415 - same

    try:
        store = open_store(load_settings().database_url)
    except ConfigError as exc:
        _config_error(exc)

    async def upgrade() -> None:
        try:
            await store.start()
        finally:
            await store.close()

    try:
        asyncio.run(upgrade())
    except StoreUnavailable as exc:
        click.echo(f"chatgate: {exc}", err=True)
        sys.exit(EXIT_STORE_UNAVAILABLE)
    click.echo(f"chatgate: the {store.kind} schema is up to date")


main.add_command(probe)
main.add_command(check)
