"""``chatgate token``: mint a token the gateway accepts, for development and tests."""

from __future__ import annotations

import os
import sys

import click

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.cli.common import EXIT_CONFIG


@click.command()
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
