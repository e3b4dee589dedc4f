"""``chatgate migrate``: bring the store's schema up to date ahead of a deploy."""

from __future__ import annotations

import asyncio
import sys

import click

from chatgate.cli.common import EXIT_STORE_UNAVAILABLE, config_error
from chatgate.errors import ConfigError, StoreUnavailable
from chatgate.settings import load_settings
from chatgate.store.base import open_store


@click.command()
def migrate() -> None:
    """Bring the schema of CHATGATE_DATABASE_URL up to date, then exit.

    Exits 0 when the schema is up to date, 1 when the database does not answer
    or refuses the connection, 2 for bad configuration.
    """
    try:
        store = open_store(load_settings().database_url)
    except ConfigError as exc:
        config_error(exc)

    async def upgrade() -> None:
        try:
            await store.start()
        finally:
            await store.close()

    try:
        asyncio.run(upgrade())
    except (StoreUnavailable, ConfigError) as exc:
        # Unreachable, or refused (no such database or role): the database
        # cannot be used as configured, whichever it is.
        click.echo(f"chatgate: {exc}", err=True)
        sys.exit(EXIT_STORE_UNAVAILABLE)
    click.echo(f"chatgate: the {store.kind} schema is up to date")
