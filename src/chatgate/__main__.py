"""``python -m chatgate``: the same command as ``chatgate``."""

from chatgate.cli import main

main(prog_name="chatgate")
