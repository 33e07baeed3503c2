"""``glueberry peers``: import / export the address book (Go ``addressbook.json``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from api.commands.db import add_database_options, database_settings

__all__ = ["register"]

HELP = """\
Import or export the node's address book in the Go Glueberry library's addressbook.json
format ({"version": 1, "peers": {...}}). The node is the one whose identity key is in
the data directory (GLUEBERRY_DATA_DIR, default ./glueberry-data; created if missing);
the database is GLUEBERRY_DATABASE_URL or <data dir>/glueberry.db. The schema is
upgraded first.
"""


def register(subparsers: Any) -> None:
    """Add the ``peers`` sub-command (``import``, ``export``)."""
    parser = subparsers.add_parser(
        "peers",
        help="address book: import / export addressbook.json",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="peers_command", metavar="ACTION")
    imp = actions.add_parser("import", help="import a Go addressbook.json")
    imp.add_argument("file", help="the addressbook.json to read")
    imp.add_argument(
        "--replace", action="store_true", help="update peers already present instead of skipping"
    )
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    exp = actions.add_parser("export", help="write the address book as addressbook.json")
    exp.add_argument("file", nargs="?", default="-", help="output file (default: stdout)")
    for sub in (imp, exp):
        add_database_options(sub)
    imp.set_defaults(func=run_import)
    exp.set_defaults(func=run_export)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


async def _open_repository(args: argparse.Namespace) -> Any:
    """Upgrade the schema and open the SqlRepository of the data directory's node."""
    from engine.config import Config
    from engine.crypto.identity import Identity
    from migrations import upgrade_async
    from models.repository import SqlRepository

    config = Config(**({"data_dir": args.data_dir} if args.data_dir else {}))
    config.key_path.parent.mkdir(parents=True, exist_ok=True)
    identity = Identity.load_or_create(config.key_path)
    try:
        peer_id = identity.peer_id
    finally:
        identity.close()
    settings = database_settings(args).model_copy(
        update={
            "max_metadata_size": config.max_metadata_size,
            "flush_interval": config.flush_interval,
        }
    )
    await upgrade_async(settings.url)
    return SqlRepository.open(settings, peer_id)


def run_import(args: argparse.Namespace) -> int:
    """Import the file; print one line per entry that was not plainly imported + totals."""
    import asyncio
    import json

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import GlueberryError
    from models.addressbook import import_addressbook, load_addressbook

    async def main() -> Any:
        document = load_addressbook(args.file)
        repo = await _open_repository(args)
        try:
            return await import_addressbook(repo, document, replace=args.replace)
        finally:
            await repo.close()

    try:
        report = asyncio.run(main())
    except (GlueberryError, ValidationError, SQLAlchemyError, OSError) as exc:
        print(f"glueberry peers import: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "summary": report.summary(),
                    "outcomes": [
                        {
                            "peer_id": o.peer_id,
                            "action": o.action,
                            "reason": o.reason,
                            "warnings": list(o.warnings),
                        }
                        for o in report.outcomes
                    ],
                }
            )
        )
        return 0
    for outcome in report.outcomes:
        if outcome.action != "imported" or outcome.warnings:
            line = f"{outcome.action:8} {outcome.peer_id}"
            if outcome.reason:
                line += f": {outcome.reason}"
            print(line)
            for warning in outcome.warnings:
                print(f"         warning: {warning}")
    summary = report.summary()
    print(", ".join(f"{count} {action}" for action, count in summary.items()))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the address book as JSON to the file (atomically) or stdout."""
    import asyncio
    import json
    import os
    from pathlib import Path

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import GlueberryError
    from models.addressbook import export_addressbook

    async def main() -> dict[str, Any]:
        repo = await _open_repository(args)
        try:
            return await export_addressbook(repo)
        finally:
            await repo.close()

    try:
        document = asyncio.run(main())
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if args.file == "-":
            sys.stdout.write(text)
        else:
            target = Path(args.file)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            print(f"exported {len(document['peers'])} peers to {target}", file=sys.stderr)
    except (GlueberryError, ValidationError, SQLAlchemyError, OSError) as exc:
        print(f"glueberry peers export: {exc}", file=sys.stderr)
        return 1
    return 0
