"""``glueberry keygen``: create the node's identity key (or show the existing one's id)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

HELP = """\
Create the Ed25519 identity key of a node (mode 0600) and print its peer id alone on the
last line. An existing key is kept (its peer id is printed) unless --force is given.

The key goes to --out, or else to <data dir>/<key file> (GLUEBERRY_DATA_DIR,
GLUEBERRY_KEY_FILE; default ./glueberry-data/identity.key), the file `glueberry serve`
uses.
"""


def register(subparsers: Any) -> None:
    """Add the ``keygen`` sub-command."""
    parser = subparsers.add_parser(
        "keygen",
        help="create the node identity key and print its peer id",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")
    parser.add_argument("--out", help="write the key to this file instead")
    parser.add_argument("--force", action="store_true", help="replace an existing key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Create or read the key; print the peer id."""
    from pathlib import Path

    from api.wiring import engine_config, load_settings
    from engine.crypto.identity import Identity
    from engine.errors import GlueberryError

    try:
        if args.out:
            path = Path(args.out)
        else:
            settings = load_settings(data_dir=args.data_dir)
            path = engine_config(settings).key_path
        if path.exists() and not args.force:
            identity = Identity.load(path)
            print(f"key exists: {path}", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()
            identity = Identity.generate()
            identity.save(path)
            print(f"key created: {path}", file=sys.stderr)
    except (GlueberryError, OSError, ValueError) as exc:
        print(f"glueberry keygen: {exc}", file=sys.stderr)
        return 1
    print(identity.peer_id)
    return 0
