"""The repository interfaces the engine persists through, and an in-memory implementation.

A :class:`Repository` holds one local node's address book, blacklist and audit log. The
engine only knows this protocol; ``models.repository.SqlRepository`` implements it on
SQLAlchemy (SQLite / PostgreSQL) and :class:`MemoryRepository` keeps everything in memory
(the default, and the reference for the shared test suite).

Two kinds of writes:

- *critical* data (peers, addresses, metadata, public keys, bans, audit entries) is
  validated, then stored before the coroutine returns (committed, for SQL);
- *hot* data (last seen, first seen, connection counts) goes through the synchronous
  :meth:`Repository.touch_peer`, which only records the update in memory; a periodic task
  started by :meth:`Repository.start` (and :meth:`Repository.flush` / ``close``) writes the
  batch. Reads merge pending hot data, so they never go backwards.

Every input is checked by :mod:`engine.peer_validation` before anything is stored.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, cast, runtime_checkable

from engine.crypto.identity import PeerId
from engine.errors import (
    BanNotFoundError,
    InvalidInputError,
    PeerExistsError,
    PeerNotFoundError,
)
from engine.peer_validation import (
    check_audit_detail,
    check_audit_kind,
    check_ban_reason,
    check_ban_target,
    check_expires_at,
    check_metadata,
    check_multiaddrs,
    check_peer_id,
    check_public_key,
)

__all__ = [
    "DEFAULT_MAX_METADATA_SIZE",
    "MAX_PAGE_SIZE",
    "AuditEntry",
    "BanRecord",
    "HotUpdate",
    "MemoryRepository",
    "PeerChange",
    "PeerRecord",
    "Repository",
    "check_audit_cursor",
    "check_audit_entry",
    "check_page",
    "check_peer_change",
]

DEFAULT_MAX_METADATA_SIZE = 4096
"""Default metadata limit in bytes (``Config.max_metadata_size``'s default)."""
MAX_PAGE_SIZE = 1000
"""Largest ``limit`` accepted by the list methods."""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One address-book entry.

    Attributes:
        peer_id: the peer's id.
        addrs: canonical multiaddr texts, in the order given.
        public_key: the raw 32-byte Ed25519 key, when known.
        metadata: application metadata (JSON size bounded by ``max_metadata_size``).
        first_seen: epoch seconds of the first contact, or ``None``.
        last_seen: epoch seconds of the latest contact, or ``None``.
        connect_count: established connections counted so far.
        created_at: epoch seconds the entry was created.
        updated_at: epoch seconds of the last critical change.
    """

    peer_id: PeerId
    addrs: tuple[str, ...]
    public_key: bytes | None
    metadata: Mapping[str, str]
    first_seen: float | None
    last_seen: float | None
    connect_count: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class BanRecord:
    """One blacklist entry.

    Attributes:
        target: the peer id text or the normalised CIDR text.
        kind: ``"peer"`` or ``"cidr"``.
        reason: free text given when banning.
        created_at: epoch seconds the ban was created.
        expires_at: epoch seconds the ban ends, or ``None`` for never.
    """

    target: str
    kind: Literal["peer", "cidr"]
    reason: str
    created_at: float
    expires_at: float | None

    def active(self, now: float) -> bool:
        """Whether the ban is in force at ``now`` (epoch seconds)."""
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit log entry (connection attempts, handshake results, bans, tampering).

    Attributes:
        id: increasing id, the cursor of :meth:`Repository.list_audit`.
        at: epoch seconds.
        kind: what happened (``handshake_failed``, ``ban_added``, ...).
        peer_id: the peer concerned, if any.
        detail: JSON-safe facts.
    """

    id: int
    at: float
    kind: str
    peer_id: str | None
    detail: Mapping[str, Any]


@dataclass(slots=True)
class HotUpdate:
    """Pending hot data for one peer, merged until the next flush.

    Attributes:
        first_seen: earliest contact seen since the last flush.
        last_seen: latest contact seen since the last flush.
        connects: connections counted since the last flush.
    """

    first_seen: float
    last_seen: float
    connects: int = 0

    def add(self, seen_at: float, connected: bool) -> None:
        """Merge one touch."""
        if seen_at < self.first_seen:
            self.first_seen = seen_at
        if seen_at > self.last_seen:
            self.last_seen = seen_at
        if connected:
            self.connects += 1

    def apply(self, record: PeerRecord) -> PeerRecord:
        """``record`` with this pending update merged in."""
        first = record.first_seen
        last = record.last_seen
        return replace(
            record,
            first_seen=self.first_seen if first is None else min(first, self.first_seen),
            last_seen=self.last_seen if last is None else max(last, self.last_seen),
            connect_count=record.connect_count + self.connects,
        )


def check_page(offset: int, limit: int) -> None:
    """Check pagination arguments.

    Raises:
        InvalidInputError: ``offset < 0`` or ``limit`` outside ``1..MAX_PAGE_SIZE``.
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInputError("offset must be a non-negative integer")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"limit must be an integer in 1..{MAX_PAGE_SIZE}")


def check_audit_cursor(since_id: int, limit: int) -> None:
    """Check the arguments of :meth:`Repository.list_audit`.

    Raises:
        InvalidInputError: ``limit`` outside ``1..MAX_PAGE_SIZE`` or ``since_id < 0``.
    """
    check_page(0, limit)
    if isinstance(since_id, bool) or not isinstance(since_id, int) or since_id < 0:
        raise InvalidInputError("since_id must be a non-negative integer")


def check_audit_entry(
    kind: str, peer_id: str | None, detail: Mapping[str, Any] | None
) -> tuple[str, str | None, dict[str, Any]]:
    """Check the arguments of :meth:`Repository.audit`.

    Returns:
        ``(kind, peer id text cut to 128 characters or None, JSON-clean detail)``.

    Raises:
        InvalidInputError: empty kind, or detail not JSON-serialisable / too large.
    """
    clean_kind = check_audit_kind(kind)
    clean_detail = check_audit_detail(detail)
    peer_text = None if peer_id is None else str(peer_id)[:128]
    return clean_kind, peer_text, clean_detail


@dataclass(frozen=True, slots=True)
class PeerChange:
    """Validated input of ``add_peer`` / ``upsert_peer`` / ``update_peer``.

    Attributes:
        peer_id: the peer.
        addrs: canonical multiaddr texts, or ``None`` for unchanged (``update_peer`` only).
        public_key: the raw 32-byte key, or ``None`` for unchanged / unknown.
        metadata: the metadata, or ``None`` for unchanged / empty.
    """

    peer_id: PeerId
    addrs: tuple[str, ...] | None
    public_key: bytes | None
    metadata: dict[str, str] | None

    def new_record(self, now: float) -> PeerRecord:
        """The record of a peer this change adds to the address book at ``now``."""
        return PeerRecord(
            self.peer_id, self.addrs or (), self.public_key, self.metadata or {},
            None, None, 0, now, now,
        )  # fmt: skip

    def apply(self, old: PeerRecord, now: float) -> PeerRecord:
        """``old`` with the given fields replaced and ``updated_at = now``."""
        return replace(
            old,
            addrs=self.addrs if self.addrs is not None else old.addrs,
            public_key=self.public_key if self.public_key is not None else old.public_key,
            metadata=self.metadata if self.metadata is not None else old.metadata,
            updated_at=now,
        )


def check_peer_change(
    peer_id: PeerId | str,
    addrs: Iterable[str] | None,
    public_key: bytes | None,
    metadata: Mapping[str, str] | None,
    *,
    max_metadata_size: int,
    addrs_optional: bool = False,
) -> PeerChange:
    """Validate the input of a peer write, in the order peer id, addrs, key, metadata.

    Args:
        peer_id: the peer.
        addrs: multiaddr texts; ``None`` means unchanged only when ``addrs_optional``.
        public_key: raw or protobuf Ed25519 key of ``peer_id``, or ``None``.
        metadata: string metadata, or ``None``.
        max_metadata_size: metadata limit in bytes.
        addrs_optional: ``update_peer``: ``None`` addrs keep the stored ones (otherwise
            addrs are required and ``None`` is refused like any non-list).

    Returns:
        The normalised change.

    Raises:
        InvalidPeerIdError, InvalidMultiaddrError, InvalidPublicKeyError,
        MetadataTooLargeError, InvalidInputError: bad input.
    """
    pid = check_peer_id(peer_id)
    if addrs is None and addrs_optional:
        clean_addrs = None
    else:
        # A None that is not optional is refused by check_multiaddrs like any non-list.
        clean_addrs = check_multiaddrs(cast("Iterable[str]", addrs), pid)
    key = check_public_key(public_key, pid)
    meta = None if metadata is None else check_metadata(metadata, max_metadata_size)
    return PeerChange(pid, clean_addrs, key, meta)


@runtime_checkable
class Repository(Protocol):
    """Persistence of one local node's address book, blacklist and audit log.

    Peer ids may be given as :class:`PeerId` or text. Every method validates its input and
    raises a typed :mod:`engine.errors` error before storing anything.
    """

    async def start(self) -> None:
        """Start background work (the periodic flush of hot data). Idempotent."""

    async def add_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """Add a new peer.

        Raises:
            PeerExistsError: the peer is already in the address book.
            InvalidPeerIdError, InvalidMultiaddrError, InvalidPublicKeyError,
            MetadataTooLargeError, InvalidInputError: bad input.
        """
        ...

    async def upsert_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """Add a peer or replace its addresses; ``None`` public key / metadata keep the old.

        Raises:
            InvalidPeerIdError, InvalidMultiaddrError, InvalidPublicKeyError,
            MetadataTooLargeError, InvalidInputError: bad input.
        """
        ...

    async def update_peer(
        self,
        peer_id: PeerId | str,
        *,
        addrs: Iterable[str] | None = None,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """Change the given fields of an existing peer (``None`` = unchanged).

        Raises:
            PeerNotFoundError: the peer is not in the address book.
            InvalidPeerIdError, InvalidMultiaddrError, InvalidPublicKeyError,
            MetadataTooLargeError, InvalidInputError: bad input.
        """
        ...

    async def remove_peer(self, peer_id: PeerId | str) -> None:
        """Remove a peer and its addresses.

        Raises:
            PeerNotFoundError: the peer is not in the address book.
        """
        ...

    async def get_peer(self, peer_id: PeerId | str) -> PeerRecord | None:
        """The peer's record, or ``None``."""
        ...

    async def list_peers(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[PeerRecord], int]:
        """One page of peers ordered by creation time, and the total count.

        Raises:
            InvalidInputError: bad pagination arguments.
        """
        ...

    def touch_peer(self, peer_id: PeerId, *, seen_at: float, connected: bool = False) -> None:
        """Record contact with a peer (hot path: synchronous, batched, never raises I/O).

        Args:
            peer_id: the peer; unknown peers are ignored when the batch is written.
            seen_at: epoch seconds of the contact.
            connected: count one more established connection.
        """
        ...

    async def add_ban(
        self, target: str, *, reason: str = "", expires_at: float | None = None
    ) -> BanRecord:
        """Blacklist a peer id or a CIDR network (replacing an existing ban of it).

        Raises:
            InvalidBanTargetError: neither a peer id nor a CIDR.
            InvalidInputError: bad reason or expiry.
        """
        ...

    async def remove_ban(self, target: str) -> None:
        """Lift a ban.

        Raises:
            BanNotFoundError: the target is not banned.
            InvalidBanTargetError: neither a peer id nor a CIDR.
        """
        ...

    async def list_bans(self, *, include_expired: bool = False) -> list[BanRecord]:
        """Bans ordered by creation time; expired ones only when asked."""
        ...

    async def audit(
        self,
        kind: str,
        *,
        peer_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit entry.

        Raises:
            InvalidInputError: empty kind, or detail not JSON-serialisable / too large.
        """
        ...

    async def list_audit(self, *, since_id: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Audit entries with ``id > since_id``, oldest first, at most ``limit``."""
        ...

    async def prune_audit(self, *, before: float) -> int:
        """Delete audit entries older than ``before`` (epoch seconds); return how many."""
        ...

    async def flush(self) -> None:
        """Write batched hot data now."""
        ...

    async def close(self) -> None:
        """Stop background work, flush, release resources. Idempotent."""
        ...


class MemoryRepository:
    """A :class:`Repository` held in memory (lost when the process ends).

    Hot data is kept per peer beside the records and merged on read (like the SQL
    repository's pending batch), so a touch costs one dict lookup; ``flush`` has no work.

    Args:
        max_metadata_size: metadata limit in bytes (``Config.max_metadata_size``).
        max_audit_entries: the audit log keeps this many newest entries.
        clock: epoch-seconds clock (injectable for tests).
    """

    def __init__(
        self,
        max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE,
        *,
        max_audit_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_metadata_size = max_metadata_size
        self._clock = clock
        # Keyed by PeerId: hashing its bytes is cheap, base58 text is not (hot path).
        self._peers: dict[PeerId, PeerRecord] = {}
        self._hot: dict[PeerId, HotUpdate] = {}
        self._bans: dict[str, BanRecord] = {}
        self._audit: collections.deque[AuditEntry] = collections.deque(maxlen=max_audit_entries)
        self._audit_id = 0
        self._closed = False

    async def start(self) -> None:
        """Nothing to start (see :meth:`Repository.start`)."""

    # -- peers --------------------------------------------------------------------------

    async def add_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`Repository.add_peer`."""
        change = check_peer_change(
            peer_id, addrs, public_key, metadata, max_metadata_size=self._max_metadata_size
        )
        if change.peer_id in self._peers:
            raise PeerExistsError(f"peer {change.peer_id} is already in the address book")
        record = change.new_record(self._clock())
        self._peers[change.peer_id] = record
        return self._view(record)

    async def upsert_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`Repository.upsert_peer`."""
        change = check_peer_change(
            peer_id, addrs, public_key, metadata, max_metadata_size=self._max_metadata_size
        )
        now = self._clock()
        old = self._peers.get(change.peer_id)
        record = change.new_record(now) if old is None else change.apply(old, now)
        self._peers[change.peer_id] = record
        return self._view(record)

    async def update_peer(
        self,
        peer_id: PeerId | str,
        *,
        addrs: Iterable[str] | None = None,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`Repository.update_peer`."""
        change = check_peer_change(
            peer_id,
            addrs,
            public_key,
            metadata,
            max_metadata_size=self._max_metadata_size,
            addrs_optional=True,
        )
        old = self._peers.get(change.peer_id)
        if old is None:
            raise PeerNotFoundError(f"peer {change.peer_id} is not in the address book")
        record = change.apply(old, self._clock())
        self._peers[change.peer_id] = record
        return self._view(record)

    async def remove_peer(self, peer_id: PeerId | str) -> None:
        """See :meth:`Repository.remove_peer`."""
        pid = check_peer_id(peer_id)
        self._hot.pop(pid, None)
        if self._peers.pop(pid, None) is None:
            raise PeerNotFoundError(f"peer {pid} is not in the address book")

    async def get_peer(self, peer_id: PeerId | str) -> PeerRecord | None:
        """See :meth:`Repository.get_peer`."""
        record = self._peers.get(check_peer_id(peer_id))
        return None if record is None else self._view(record)

    async def list_peers(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[PeerRecord], int]:
        """See :meth:`Repository.list_peers`."""
        check_page(offset, limit)
        ordered = sorted(self._peers.values(), key=lambda r: (r.created_at, r.peer_id.to_string()))
        return [self._view(r) for r in ordered[offset : offset + limit]], len(ordered)

    def touch_peer(self, peer_id: PeerId, *, seen_at: float, connected: bool = False) -> None:
        """See :meth:`Repository.touch_peer` (applied at once in memory)."""
        if not isinstance(peer_id, PeerId):  # text is accepted, but costs a parse
            peer_id = check_peer_id(peer_id)
        if peer_id not in self._peers:
            return
        cur = self._hot.get(peer_id)
        if cur is None:
            self._hot[peer_id] = HotUpdate(seen_at, seen_at, 1 if connected else 0)
        else:
            cur.add(seen_at, connected)

    # -- bans ---------------------------------------------------------------------------

    async def add_ban(
        self, target: str, *, reason: str = "", expires_at: float | None = None
    ) -> BanRecord:
        """See :meth:`Repository.add_ban`."""
        normalised, kind = check_ban_target(target)
        clean_reason = check_ban_reason(reason)
        expiry = check_expires_at(expires_at)
        old = self._bans.get(normalised)
        created = old.created_at if old is not None else self._clock()
        record = BanRecord(normalised, kind, clean_reason, created, expiry)
        self._bans[normalised] = record
        return record

    async def remove_ban(self, target: str) -> None:
        """See :meth:`Repository.remove_ban`."""
        normalised, _ = check_ban_target(target)
        if self._bans.pop(normalised, None) is None:
            raise BanNotFoundError(f"{normalised} is not blacklisted")

    async def list_bans(self, *, include_expired: bool = False) -> list[BanRecord]:
        """See :meth:`Repository.list_bans`."""
        now = self._clock()
        bans = sorted(self._bans.values(), key=lambda b: (b.created_at, b.target))
        return [b for b in bans if include_expired or b.active(now)]

    # -- audit --------------------------------------------------------------------------

    async def audit(
        self,
        kind: str,
        *,
        peer_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`Repository.audit`."""
        clean_kind, peer_text, clean_detail = check_audit_entry(kind, peer_id, detail)
        self._audit_id += 1
        self._audit.append(
            AuditEntry(self._audit_id, self._clock(), clean_kind, peer_text, clean_detail)
        )

    async def list_audit(self, *, since_id: int = 0, limit: int = 100) -> list[AuditEntry]:
        """See :meth:`Repository.list_audit`."""
        check_audit_cursor(since_id, limit)
        out: list[AuditEntry] = []
        for entry in self._audit:
            if entry.id > since_id:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    # -- lifecycle ----------------------------------------------------------------------

    async def prune_audit(self, *, before: float) -> int:
        """See :meth:`Repository.prune_audit`."""
        kept = [e for e in self._audit if e.at >= before]
        removed = len(self._audit) - len(kept)
        self._audit.clear()
        self._audit.extend(kept)
        return removed

    def _view(self, record: PeerRecord) -> PeerRecord:
        # Records are frozen, but ``metadata`` is a dict: hand out a copy so a caller that
        # mutates it cannot change what the repository holds. Hot data is merged here.
        hot = self._hot.get(record.peer_id)
        if hot is not None:
            record = hot.apply(record)
        return replace(record, metadata=dict(record.metadata))

    async def flush(self) -> None:
        """Nothing to write: memory is the store."""

    async def close(self) -> None:
        """Mark closed (the data stays readable)."""
        self._closed = True
