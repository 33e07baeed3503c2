"""Import and export of the Go Glueberry library's ``addressbook.json``.

The Go file is ``{"version": 1, "peers": {"<peer id>": entry}}`` where an entry is
``{"peer_id", "multiaddrs": [..], "public_key": base64 (raw 32-byte Ed25519 key,
optional), "metadata": {str: str} (optional), "last_seen", "blacklisted", "created_at",
"updated_at"}`` with RFC 3339 times (Go writes the zero time ``0001-01-01T00:00:00Z`` for
"never").

Import works through the engine's :class:`~engine.repository.Repository`, so it runs
against any backend. Each entry becomes one outcome:

- ``imported`` / ``updated`` (with ``--replace``): the peer is in the address book; its
  ``last_seen`` is kept (as hot data, flushed at the end);
- ``banned``: the entry was blacklisted, so its peer id goes on the blacklist instead;
- ``skipped``: with the reason (invalid peer id, key/entry mismatch, metadata too large,
  already present, ...).

Invalid multiaddrs are dropped from an entry with a warning, as the Go library did when
loading the file. Export writes the same format (bans of peer ids as ``blacklisted``
entries), so a file exported here loads in the Go library.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from engine.errors import GlueberryError, InvalidInputError, PeerExistsError
from engine.peer_validation import check_multiaddrs, check_peer_id
from engine.repository import MAX_PAGE_SIZE, PeerRecord, Repository

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_SIZE",
    "ImportOutcome",
    "ImportReport",
    "export_addressbook",
    "format_time",
    "import_addressbook",
    "load_addressbook",
    "parse_time",
]

FORMAT_VERSION = 1
MAX_FILE_SIZE = 64 * 1024 * 1024
"""Largest address book file read (bytes)."""
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
BAN_REASON = "imported from addressbook.json (blacklisted)"

Action = Literal["imported", "updated", "banned", "skipped"]

# RFC 3339 with up to nanosecond fractions (Go's RFC3339Nano); Python parses microseconds.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What happened to one entry of the file.

    Attributes:
        peer_id: the entry's key in the file.
        action: ``imported``, ``updated``, ``banned`` or ``skipped``.
        reason: why it was skipped or banned (empty otherwise).
        warnings: dropped multiaddrs and other non-fatal problems.
    """

    peer_id: str
    action: Action
    reason: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class ImportReport:
    """All outcomes of one import, in file order."""

    outcomes: list[ImportOutcome] = field(default_factory=list)

    def count(self, action: Action) -> int:
        """How many entries ended with ``action``."""
        return sum(1 for o in self.outcomes if o.action == action)

    def summary(self) -> dict[str, int]:
        """``{"imported", "updated", "banned", "skipped"}`` counts."""
        return {a: self.count(a) for a in ("imported", "updated", "banned", "skipped")}


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time; ``None`` for null, empty or Go's zero time.

    Raises:
        InvalidInputError: not an RFC 3339 string.
    """
    if value is None or value == "" or value == GO_ZERO_TIME:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"time must be an RFC 3339 string, not {type(value).__name__}")
    match = _RFC3339.match(value.strip())
    if match is None:
        raise InvalidInputError(f"not an RFC 3339 time: {value[:40]!r}")
    date, clock, frac, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as exc:
        raise InvalidInputError(f"not an RFC 3339 time: {value[:40]!r}") from exc
    if moment.year <= 1:  # Go's zero time in another zone
        return None
    return moment.timestamp() + (int(frac.ljust(9, "0")) / 1e9 if frac else 0.0)


def format_time(epoch: float | None) -> str:
    """RFC 3339 UTC text of epoch seconds (Go's zero time for ``None``)."""
    if epoch is None:
        return GO_ZERO_TIME
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def load_addressbook(path: str | Path) -> dict[str, Any]:
    """Read and check the top level of an address book file.

    Raises:
        InvalidInputError: unreadable, too large, not JSON, wrong version or shape.
    """
    target = Path(path)
    try:
        with target.open("rb") as fh:
            raw = fh.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {target}: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_SIZE:
        raise InvalidInputError(f"{target} is larger than {MAX_FILE_SIZE} bytes")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{target} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInputError(f"{target} is nested too deeply") from None
    return check_document(document)


def check_document(document: Any) -> dict[str, Any]:
    """Check ``{"version": 1, "peers": {...}}``; return the document.

    Raises:
        InvalidInputError: wrong version or shape.
    """
    if not isinstance(document, dict):
        raise InvalidInputError("address book must be a JSON object")
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"unsupported address book version {document.get('version')!r} "
            f"(expected {FORMAT_VERSION})"
        )
    peers = document.get("peers")
    if peers is None:
        document["peers"] = {}
    elif not isinstance(peers, dict):
        raise InvalidInputError('"peers" must be an object keyed by peer id')
    return document


async def import_addressbook(
    repo: Repository, document: Mapping[str, Any], *, replace: bool = False
) -> ImportReport:
    """Import the entries of an address book document into ``repo``.

    Args:
        repo: the target repository.
        document: the parsed file (see :func:`load_addressbook`).
        replace: update peers already in the address book instead of skipping them.

    Returns:
        One outcome per entry. Hot data (``last_seen``) is flushed before returning.

    Raises:
        InvalidInputError: the document's top level is invalid.
        StorageError: the repository failed (entries before the failure stay imported).
    """
    checked = check_document(dict(document))
    report = ImportReport()
    for key, entry in checked["peers"].items():
        report.outcomes.append(await _import_one(repo, str(key), entry, replace))
    await repo.flush()
    return report


async def _import_one(repo: Repository, key: str, entry: Any, replace: bool) -> ImportOutcome:
    shown = key[:80]
    if not isinstance(entry, dict):
        return ImportOutcome(shown, "skipped", "entry is not an object")
    try:
        pid = check_peer_id(key)
    except GlueberryError as exc:
        return ImportOutcome(shown, "skipped", f"invalid peer id: {exc.message}")
    inner = entry.get("peer_id", key)
    if inner != key:
        return ImportOutcome(shown, "skipped", f"entry peer_id {str(inner)[:60]!r} != its key")
    warnings: list[str] = []
    if entry.get("blacklisted") is True:
        try:
            await repo.add_ban(pid.to_string(), reason=BAN_REASON)
        except GlueberryError as exc:  # pragma: no cover - a valid peer id always bans
            return ImportOutcome(shown, "skipped", f"could not ban: {exc.message}")
        return ImportOutcome(shown, "banned", "blacklisted: added to the blacklist instead")
    raw_addrs = entry.get("multiaddrs") or []
    if not isinstance(raw_addrs, list):
        return ImportOutcome(shown, "skipped", '"multiaddrs" is not a list')
    addrs: list[str] = []
    for text in raw_addrs:
        try:
            addrs.extend(check_multiaddrs([text], pid))
        except GlueberryError as exc:
            warnings.append(f"dropped multiaddr: {exc.message}")
    public_key: bytes | None = None
    if entry.get("public_key"):
        try:
            public_key = base64.b64decode(str(entry["public_key"]), validate=True)
        except (binascii.Error, ValueError):
            return ImportOutcome(shown, "skipped", "public_key is not base64", tuple(warnings))
    metadata = entry.get("metadata") or {}
    try:
        last_seen = parse_time(entry.get("last_seen"))
    except InvalidInputError as exc:
        warnings.append(f"last_seen ignored: {exc.message}")
        last_seen = None
    action: Action = "imported"
    try:
        try:
            await repo.add_peer(pid, addrs, public_key=public_key, metadata=metadata)
        except PeerExistsError:
            if not replace:
                return ImportOutcome(
                    shown, "skipped", "already in the address book", tuple(warnings)
                )
            await repo.upsert_peer(pid, addrs, public_key=public_key, metadata=metadata)
            action = "updated"
    except InvalidInputError as exc:
        return ImportOutcome(shown, "skipped", exc.message, tuple(warnings))
    if last_seen is not None:
        repo.touch_peer(pid, seen_at=last_seen)
    return ImportOutcome(shown, action, "", tuple(warnings))


async def export_addressbook(repo: Repository) -> dict[str, Any]:
    """The repository's address book and peer bans in the Go ``addressbook.json`` format.

    Raises:
        StorageError: the repository failed.
    """
    await repo.flush()
    peers: dict[str, Any] = {}
    banned = {b.target for b in await repo.list_bans() if b.kind == "peer"}
    offset = 0
    while True:
        page, total = await repo.list_peers(offset=offset, limit=MAX_PAGE_SIZE)
        for record in page:
            text = record.peer_id.to_string()
            peers[text] = _entry(record, text in banned)
        offset += len(page)
        if not page or offset >= total:
            break
    for target in sorted(banned - peers.keys()):
        peers[target] = {
            "peer_id": target,
            "multiaddrs": [],
            "last_seen": GO_ZERO_TIME,
            "blacklisted": True,
            "created_at": GO_ZERO_TIME,
            "updated_at": GO_ZERO_TIME,
        }
    return {"version": FORMAT_VERSION, "peers": peers}


def _entry(record: PeerRecord, blacklisted: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "peer_id": record.peer_id.to_string(),
        "multiaddrs": list(record.addrs),
    }
    if record.public_key:
        entry["public_key"] = base64.b64encode(record.public_key).decode("ascii")
    if record.metadata:
        entry["metadata"] = dict(record.metadata)
    entry["last_seen"] = format_time(record.last_seen)
    entry["blacklisted"] = blacklisted
    entry["created_at"] = format_time(record.created_at)
    entry["updated_at"] = format_time(record.updated_at)
    return entry
