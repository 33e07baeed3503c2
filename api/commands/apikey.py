"""``glueberry apikey create|list|revoke``: manage the gateway's API keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["register"]

HELP = """\
Manage API keys of the node in the data directory (GLUEBERRY_DATA_DIR) and database
(GLUEBERRY_DATABASE_URL; default SQLite in the data directory). Keys are stored hashed;
`create` prints the new key alone on its last line, the only time it is shown.

Scopes: monitor (read and watch), peers:write, streams:send, admin (everything).
"""


def register(subparsers: Any) -> None:
    """Add the ``apikey`` sub-command with its ``create``, ``list`` and ``revoke`` actions."""
    from api.auth import Scope

    parser = subparsers.add_parser(
        "apikey",
        help="create, list or revoke API keys",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="create a key; prints it on the last line")
    create.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        required=True,
        help="granted scope (repeat for several)",
    )
    create.add_argument("--name", default="cli", help="what the key is for (default: cli)")
    create.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")
    create.set_defaults(func=_sync(_create))

    listing = actions.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")
    listing.set_defaults(func=_sync(_list))

    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", help="the key id (second part of gb_<id>_...)")
    revoke.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")
    revoke.set_defaults(func=_sync(_revoke))


def _sync(func: Any) -> Any:
    def runner(args: argparse.Namespace) -> int:
        from engine.errors import GlueberryError

        try:
            code: int = asyncio.run(_with_repo(func, args))
        except GlueberryError as exc:
            print(f"glueberry apikey: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        return code

    return runner


async def _with_repo(func: Any, args: argparse.Namespace) -> int:
    from api.wiring import load_settings, open_api_keys

    settings = load_settings(data_dir=args.data_dir)
    repo, engine = await open_api_keys(settings)
    try:
        code: int = await func(repo, args)
        return code
    finally:
        await repo.close()
        await engine.dispose()


async def _create(repo: Any, args: argparse.Namespace) -> int:
    new = await repo.create(args.name, args.scope)
    scopes = ",".join(new.record.scopes)
    print(f"created API key {new.record.key_id} ({args.name}; scopes: {scopes})", file=sys.stderr)
    print(new.token)
    return 0


async def _list(repo: Any, args: argparse.Namespace) -> int:
    records = await repo.list()
    if args.json:
        for r in records:
            print(
                json.dumps(
                    {
                        "key_id": r.key_id,
                        "name": r.name,
                        "scopes": list(r.scopes),
                        "created_at": r.created_at,
                        "last_used_at": r.last_used_at,
                        "revoked_at": r.revoked_at,
                    }
                )
            )
        return 0
    print(f"{'KEY ID':<16}  {'NAME':<20}  {'SCOPES':<32}  STATUS")
    for r in records:
        status = "revoked" if r.revoked_at is not None else "active"
        print(f"{r.key_id:<16}  {r.name[:20]:<20}  {','.join(r.scopes)[:32]:<32}  {status}")
    return 0


async def _revoke(repo: Any, args: argparse.Namespace) -> int:
    record = await repo.revoke(args.key_id)
    print(f"revoked {record.key_id}")
    return 0
