"""The ``glueberry`` command: one sub-command module per concept under ``api/commands``.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, adding its
sub-command(s) with a ``func`` default that takes the parsed arguments and returns an exit
code. Importing a command module must stay cheap: heavy imports go inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = (
    "api.commands.serve",
    "api.commands.keygen",
    "api.commands.apikey",
    "api.commands.db",
    "api.commands.peers",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="glueberry",
        description="Glueberry: secure P2P messaging node and HTTP gateway.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a command not yet written
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``glueberry`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
