"""What the subcommands share: exit codes, and how a configuration error is reported."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from chatgate.errors import ConfigError

EXIT_CONFIG = 2
EXIT_STORE_UNAVAILABLE = 1


def config_error(exc: ConfigError) -> NoReturn:
    """Say what is wrong with the configuration in one line, then exit 2."""
    click.echo(f"chatgate: configuration error: {exc}", err=True)
    sys.exit(EXIT_CONFIG)
