"""``chatgate token``: mint a token the gateway accepts, for development and tests.

It refuses to mint what the server would refuse: an empty subject, or a key
shorter than HS256 needs. With ``CHATGATE_JWT_SECRET`` unset, in development,
it signs with the secret ``chatgate serve`` keeps beside its SQLite file
(``chatgate.auth.dev_secret``), so that the tokens it mints work on that server.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.cli.common import EXIT_CONFIG, config_error
from chatgate.errors import ConfigError
from chatgate.settings import MIN_HMAC_KEY_BYTES

_JWT_SECRET = "CHATGATE_JWT_SECRET"  # noqa: S105 - the variable's name, not a secret
_E2E_KEY = "E2E_OAUTH_SIMULATION_KEY"


def _refuse(problem: str) -> NoReturn:
    click.echo(f"chatgate: {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def _dev_secret() -> str:
    """The development secret of the configured SQLite store, if ``chatgate serve`` kept one.

    Raises:
        ConfigError: the settings are invalid, or the kept secret is unreadable.
    """
    from chatgate.auth.dev_secret import dev_secret_path, read_dev_secret  # noqa: PLC0415 - only when needed
    from chatgate.settings import load_settings  # noqa: PLC0415

    path = dev_secret_path(load_settings())
    if path is None:
        _refuse(
            f"{_JWT_SECRET} is not set (a development server with a SQLite store "
            "keeps its secret beside the database, and this command reads it)"
        )
    secret = read_dev_secret(path)
    if secret is None:
        _refuse(f"{_JWT_SECRET} is not set, and {path} does not exist yet: run chatgate serve once")
    return secret


def _signing_key(e2e: bool) -> tuple[str, str]:
    """The key to sign with and the name to report it by."""
    variable = _E2E_KEY if e2e else _JWT_SECRET
    key = os.environ.get(variable, "").strip()
    if key:
        return key, variable
    if e2e:
        _refuse(f"{variable} is not set")
    try:
        secret = _dev_secret()
    except ConfigError as exc:
        config_error(exc)
    return secret, "the development secret"


@click.command()
@click.option("--sub", required=True, help="The subject (user id) of the token.")
@click.option(
    "--ttl", default=3600, show_default=True, help="Seconds to live; negative for an expired token."
)
@click.option("--aud", default=None, help="Audience claim.")
@click.option("--iss", default=None, help="Issuer claim.")
@click.option("--e2e", is_flag=True, help="Mint an E2E test token with E2E_OAUTH_SIMULATION_KEY.")
def token(sub: str, ttl: int, aud: str | None, iss: str | None, e2e: bool) -> None:
    """Mint a token signed with CHATGATE_JWT_SECRET (or, with --e2e, E2E_OAUTH_SIMULATION_KEY).

    In development with CHATGATE_JWT_SECRET unset, the secret chatgate serve
    keeps beside its SQLite database signs it. Exits 2 when the token could
    not work: an empty --sub, no key, or a key under 32 bytes.
    """
    if not sub.strip():
        _refuse("--sub is empty: a token must name its user")
    key, name = _signing_key(e2e)
    if len(key.encode()) < MIN_HMAC_KEY_BYTES:
        _refuse(
            f"{name} is too short: HS256 needs at least {MIN_HMAC_KEY_BYTES} bytes, "
            "and the server refuses a shorter one"
        )
    try:
        minted = (
            mint_test_token(key, sub, ttl_s=ttl)
            if e2e
            else mint_token(key, sub, ttl_s=ttl, audience=aud, issuer=iss)
        )
    except ValueError as exc:
        _refuse(str(exc))
    click.echo(minted)
