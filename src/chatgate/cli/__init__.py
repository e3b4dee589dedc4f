"""The ``chatgate`` command: ``serve``, ``token``, ``migrate``, ``probe`` and ``check``.

One module per subcommand; each imports what it needs only when it runs, so
that ``chatgate token`` stays light.
"""

from __future__ import annotations

import click

from chatgate import __version__
from chatgate.cli.common import EXIT_CONFIG, EXIT_STORE_UNAVAILABLE
from chatgate.cli.migrate import migrate
from chatgate.cli.serve import serve
from chatgate.cli.token import token
from chatgate.probe.cli import check, probe

__all__ = ["EXIT_CONFIG", "EXIT_STORE_UNAVAILABLE", "main"]


@click.group()
@click.version_option(__version__, prog_name="chatgate")
def main() -> None:
    """chatgate: a WebSocket gateway for AI-agent chat."""


main.add_command(serve)
main.add_command(token)
main.add_command(migrate)
main.add_command(probe)
main.add_command(check)
