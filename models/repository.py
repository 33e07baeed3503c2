"""``SqlRepository``: the engine's :class:`~engine.repository.Repository` on SQLAlchemy.

Critical writes (peers, addresses, metadata, bans, audit entries) run in one transaction
each and are committed before the coroutine returns. Hot data (last seen, first seen,
connection counts) arrives through the synchronous :meth:`SqlRepository.touch_peer`,
is merged per peer in memory and written by :meth:`SqlRepository.flush`: every
``flush_interval`` seconds by the task :meth:`SqlRepository.start` creates, early when the
batch grows past ``max_pending``, and on :meth:`SqlRepository.close`. One flush is one
``executemany`` UPDATE, so the cost per touch is a dict update plus a share of a batch.

Input is validated by :mod:`engine.peer_validation` before any statement runs, so a bad
input raises a typed error and nothing is half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Double,
    Integer,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from engine.crypto.identity import PeerId
from engine.errors import (
    BanNotFoundError,
    InvalidInputError,
    PeerExistsError,
    PeerNotFoundError,
    StorageError,
)
from engine.peer_validation import (
    check_ban_reason,
    check_ban_target,
    check_expires_at,
    check_peer_id,
)
from engine.repository import (
    DEFAULT_MAX_METADATA_SIZE,
    AuditEntry,
    BanRecord,
    HotUpdate,
    PeerChange,
    PeerRecord,
    check_audit_cursor,
    check_audit_entry,
    check_page,
    check_peer_change,
)
from models.database import create_engine, read_connection, write_transaction
from models.flusher import PeriodicFlusher
from models.settings import DatabaseSettings
from models.tables import AuditRow, BanRow, PeerAddrRow, PeerRow

__all__ = [
    "AUDIT_TRIM_EVERY",
    "DEFAULT_MAX_AUDIT_ENTRIES",
    "PENDING_HARD_LIMIT_FACTOR",
    "SqlRepository",
    "resolve_engine",
]

PENDING_HARD_LIMIT_FACTOR = 4
"""Pending hot data is kept for at most this many times ``max_pending`` peers."""

DEFAULT_MAX_AUDIT_ENTRIES = 1_000_000
"""Audit entries kept per node by default (about the newest million)."""

AUDIT_TRIM_EVERY = 1000
"""Appends between two trims of the audit log to ``max_audit_entries``."""


_peers = cast(Table, PeerRow.__table__)
_addrs = cast(Table, PeerAddrRow.__table__)
_bans = cast(Table, BanRow.__table__)
_audit = cast(Table, AuditRow.__table__)

# One UPDATE per peer, executed as a batch (executemany). The bind names differ from the
# column names, which SQLAlchemy requires for executemany UPDATEs. first/last seen only
# ever move outwards, so a late flush cannot make a value go backwards.
_HOT_UPDATE = (
    update(_peers)
    .where(
        _peers.c.local_peer_id == bindparam("b_local"),
        _peers.c.peer_id == bindparam("b_peer"),
    )
    .values(
        first_seen=case(
            (_peers.c.first_seen.is_(None), bindparam("b_first", type_=Double())),
            (
                _peers.c.first_seen > bindparam("b_first", type_=Double()),
                bindparam("b_first", type_=Double()),
            ),
            else_=_peers.c.first_seen,
        ),
        last_seen=case(
            (_peers.c.last_seen.is_(None), bindparam("b_last", type_=Double())),
            (
                _peers.c.last_seen < bindparam("b_last", type_=Double()),
                bindparam("b_last", type_=Double()),
            ),
            else_=_peers.c.last_seen,
        ),
        connect_count=_peers.c.connect_count + bindparam("b_connects", type_=Integer()),
    )
)


def resolve_engine(
    source: AsyncEngine | async_sessionmaker[AsyncSession],
) -> AsyncEngine:
    """The engine behind an ``AsyncEngine`` or an ``async_sessionmaker`` bound to one.

    Raises:
        StorageError: the session maker is not bound to an ``AsyncEngine``.
    """
    if isinstance(source, AsyncEngine):
        return source
    bind = source.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise StorageError("the session maker is not bound to an AsyncEngine")
    return bind


class SqlRepository:
    """The address book, blacklist and audit log of one local node, in a SQL database.

    Args:
        source: an ``AsyncEngine`` or ``async_sessionmaker`` (not disposed by ``close``;
            use :meth:`open` for a repository that owns its engine).
        local_peer_id: the local node's peer id; every row is scoped by it.
        max_metadata_size: metadata limit in bytes (``Config.max_metadata_size``).
        flush_interval: seconds between flushes of hot data once :meth:`start` ran.
        max_pending: peers with pending hot data that trigger an early flush. Touches
            are recorded for any peer id (inbound peers mint them freely), so while
            flushes fail (database down) pending data stops growing at
            ``PENDING_HARD_LIMIT_FACTOR * max_pending`` peers: touches of further peers
            are dropped (counted in :attr:`dropped_touches`); known ones still merge.
        max_audit_entries: the audit log keeps about this many newest entries (older ones
            are deleted every ``AUDIT_TRIM_EVERY`` appends): remote peers can make the
            node append entries (a failed handshake is one), so the log must not grow
            without bound. ``None`` keeps everything (prune with :meth:`prune_audit`).
        clock: epoch-seconds clock (injectable for tests).

    Raises:
        InvalidPeerIdError: ``local_peer_id`` is not a peer id.
    """

    def __init__(
        self,
        source: AsyncEngine | async_sessionmaker[AsyncSession],
        local_peer_id: PeerId | str,
        *,
        max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE,
        flush_interval: float = 5.0,
        max_pending: int = 10_000,
        max_audit_entries: int | None = DEFAULT_MAX_AUDIT_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not flush_interval > 0:
            raise InvalidInputError("flush_interval must be positive")
        if max_audit_entries is not None and max_audit_entries < 1:
            raise InvalidInputError("max_audit_entries must be positive (or None)")
        self._max_audit = max_audit_entries
        self._audit_since_trim = 0
        self._engine = resolve_engine(source)
        self._local = check_peer_id(local_peer_id).to_string()
        self._max_metadata_size = max_metadata_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._hard_limit = PENDING_HARD_LIMIT_FACTOR * max(1, max_pending)
        #: Touches dropped because pending hot data reached its hard limit.
        self.dropped_touches = 0
        self._clock = clock
        self._owns_engine = False
        # Hot data: ``_pending`` collects touches; while a flush writes a batch it sits in
        # ``_inflight`` so reads still merge it (values never go backwards).
        # Keyed by PeerId, not text: hashing the multihash bytes is far cheaper than base58
        # (the text form is computed once per peer per flush, not once per touch).
        self._pending: dict[PeerId, HotUpdate] = {}
        self._inflight: dict[PeerId, HotUpdate] = {}
        self._flush_lock = asyncio.Lock()
        self._flusher = PeriodicFlusher(
            self.flush, flush_interval, name=f"glueberry-repo-flush-{self._local[-8:]}"
        )
        self._closed = False

    @classmethod
    def open(
        cls,
        settings: DatabaseSettings,
        local_peer_id: PeerId | str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> SqlRepository:
        """A repository on a new engine built from ``settings``; ``close`` disposes it."""
        repo = cls(
            create_engine(settings),
            local_peer_id,
            max_metadata_size=settings.max_metadata_size,
            flush_interval=settings.flush_interval,
            clock=clock,
        )
        repo._owns_engine = True
        return repo

    @property
    def engine(self) -> AsyncEngine:
        """The engine this repository writes to."""
        return self._engine

    @property
    def local_peer_id(self) -> str:
        """The local node's peer id text (the scope of every row)."""
        return self._local

    @property
    def pending_count(self) -> int:
        """Peers with hot data not yet written."""
        return len(self._pending)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the periodic flush task (idempotent).

        Raises:
            StorageError: the repository is closed.
        """
        if self._closed:
            raise StorageError("the repository is closed")
        self._flusher.start()

    async def wait_flushed(self, rounds: int = 1) -> None:
        """Wait until the flush task completed ``rounds`` rounds (wrap in a timeout)."""
        await self._flusher.wait_flushed(rounds)

    @property
    def flush_rounds(self) -> int:
        """Rounds the flush task has completed."""
        return self._flusher.rounds

    async def close(self) -> None:
        """Stop the flush task, write pending hot data, dispose an owned engine.

        Raises:
            StorageError, StorageUnavailableError: the final flush failed.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._flusher.stop()
            await self.flush()
        finally:
            if self._owns_engine:
                await self._engine.dispose()

    async def flush(self) -> None:
        """Write pending hot data now (one batched UPDATE).

        Raises:
            StorageError, StorageUnavailableError: the write failed; the batch is kept
                and retried by the next flush.
        """
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            self._inflight = batch
            params = [
                {
                    "b_local": self._local,
                    "b_peer": peer.to_string(),
                    "b_first": upd.first_seen,
                    "b_last": upd.last_seen,
                    "b_connects": upd.connects,
                }
                for peer, upd in batch.items()
            ]
            try:
                async with self._write() as conn:
                    await conn.execute(_HOT_UPDATE, params)
            except BaseException:
                for peer, upd in batch.items():
                    self._merge_pending(peer, upd)
                raise
            finally:
                self._inflight = {}

    def _merge_pending(self, peer: PeerId, upd: HotUpdate) -> None:
        cur = self._pending.get(peer)
        if cur is None:
            if len(self._pending) >= self._hard_limit:
                self.dropped_touches += 1
                return
            self._pending[peer] = upd
        else:
            cur.first_seen = min(cur.first_seen, upd.first_seen)
            cur.last_seen = max(cur.last_seen, upd.last_seen)
            cur.connects += upd.connects

    # -- hot path -----------------------------------------------------------------------

    def touch_peer(self, peer_id: PeerId, *, seen_at: float, connected: bool = False) -> None:
        """Record contact with a peer in memory (see :meth:`Repository.touch_peer`)."""
        if not isinstance(peer_id, PeerId):  # text is accepted, but costs a parse
            peer_id = check_peer_id(peer_id)
        cur = self._pending.get(peer_id)
        if cur is None:
            if len(self._pending) >= self._hard_limit:
                self.dropped_touches += 1
                self._flusher.wake()
                return
            self._pending[peer_id] = HotUpdate(seen_at, seen_at, 1 if connected else 0)
            if len(self._pending) >= self._max_pending:
                self._flusher.wake()
        else:
            cur.add(seen_at, connected)

    def _with_hot(self, record: PeerRecord) -> PeerRecord:
        # A read may run while a flush writes ``_inflight``; the row it got may or may not
        # include that batch already. first/last seen merge idempotently (min/max), but
        # connection counts add up, so the in-flight batch is merged only when the row
        # visibly lacks it: a flushed batch always leaves ``last_seen >= batch.last_seen``.
        inflight = self._inflight.get(record.peer_id)
        if inflight is not None and (
            record.last_seen is None or record.last_seen < inflight.last_seen
        ):
            record = inflight.apply(record)
        pending = self._pending.get(record.peer_id)
        if pending is not None:
            record = pending.apply(record)
        return record

    # -- connections and error translation ----------------------------------------------

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self._engine)

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return read_connection(self._engine)

    # -- peers --------------------------------------------------------------------------

    async def add_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`engine.repository.Repository.add_peer`."""
        change = check_peer_change(
            peer_id, addrs, public_key, metadata, max_metadata_size=self._max_metadata_size
        )
        text = change.peer_id.to_string()
        record = change.new_record(self._clock())
        try:
            async with self._write() as conn:
                if await self._peer_exists(conn, text):
                    raise PeerExistsError(f"peer {text} is already in the address book")
                await self._insert_peer(conn, record)
                await self._insert_addrs(conn, text, record.addrs)
        except IntegrityError as exc:  # a concurrent writer added it first (PostgreSQL)
            raise PeerExistsError(f"peer {text} is already in the address book") from exc
        return self._with_hot(record)

    async def upsert_peer(
        self,
        peer_id: PeerId | str,
        addrs: Iterable[str],
        *,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`engine.repository.Repository.upsert_peer`."""
        change = check_peer_change(
            peer_id, addrs, public_key, metadata, max_metadata_size=self._max_metadata_size
        )
        for attempt in range(2):
            try:
                return await self._upsert_once(change)
            except IntegrityError as exc:  # lost an insert race; the row exists now
                if attempt:
                    raise StorageError(f"could not upsert peer {change.peer_id}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _upsert_once(self, change: PeerChange) -> PeerRecord:
        text = change.peer_id.to_string()
        now = self._clock()
        async with self._write() as conn:
            row = await self._select_peer(conn, text)
            if row is None:
                record = change.new_record(now)
                await self._insert_peer(conn, record)
            else:
                record = change.apply(_peer_record(row, ()), now)
                await self._update_critical(conn, record)
                await conn.execute(delete(_addrs).where(*self._addr_scope(text)))
            await self._insert_addrs(conn, text, record.addrs)
        return self._with_hot(record)

    async def update_peer(
        self,
        peer_id: PeerId | str,
        *,
        addrs: Iterable[str] | None = None,
        public_key: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PeerRecord:
        """See :meth:`engine.repository.Repository.update_peer`."""
        change = check_peer_change(
            peer_id,
            addrs,
            public_key,
            metadata,
            max_metadata_size=self._max_metadata_size,
            addrs_optional=True,
        )
        text = change.peer_id.to_string()
        now = self._clock()
        async with self._write() as conn:
            row = await self._select_peer(conn, text)
            if row is None:
                raise PeerNotFoundError(f"peer {text} is not in the address book")
            if change.addrs is None:
                current = await self._select_addrs(conn, [text])
                stored_addrs = tuple(current.get(text, ()))
            else:
                await conn.execute(delete(_addrs).where(*self._addr_scope(text)))
                await self._insert_addrs(conn, text, change.addrs)
                stored_addrs = ()  # replaced by the change
            record = change.apply(_peer_record(row, stored_addrs), now)
            await self._update_critical(conn, record)
        return self._with_hot(record)

    async def remove_peer(self, peer_id: PeerId | str) -> None:
        """See :meth:`engine.repository.Repository.remove_peer`."""
        pid = check_peer_id(peer_id)
        text = pid.to_string()
        async with self._write() as conn:
            # Addresses first: correct even where foreign keys are not enforced.
            await conn.execute(delete(_addrs).where(*self._addr_scope(text)))
            result = await conn.execute(
                delete(_peers).where(
                    _peers.c.local_peer_id == self._local, _peers.c.peer_id == text
                )
            )
            if result.rowcount == 0:
                raise PeerNotFoundError(f"peer {text} is not in the address book")
        self._pending.pop(pid, None)

    async def get_peer(self, peer_id: PeerId | str) -> PeerRecord | None:
        """See :meth:`engine.repository.Repository.get_peer`."""
        text = check_peer_id(peer_id).to_string()
        async with self._read() as conn:
            row = await self._select_peer(conn, text)
            if row is None:
                return None
            addrs = await self._select_addrs(conn, [text])
        return self._with_hot(_peer_record(row, tuple(addrs.get(text, ()))))

    async def list_peers(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[PeerRecord], int]:
        """See :meth:`engine.repository.Repository.list_peers`."""
        check_page(offset, limit)
        async with self._read() as conn:
            total = (
                await conn.execute(
                    select(func.count())
                    .select_from(_peers)
                    .where(_peers.c.local_peer_id == self._local)
                )
            ).scalar_one()
            rows = (
                await conn.execute(
                    select(_peers)
                    .where(_peers.c.local_peer_id == self._local)
                    .order_by(_peers.c.created_at, _peers.c.peer_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
            addrs = await self._select_addrs(conn, [r.peer_id for r in rows])
        page = [self._with_hot(_peer_record(r, tuple(addrs.get(r.peer_id, ())))) for r in rows]
        return page, int(total)

    async def _peer_exists(self, conn: AsyncConnection, text: str) -> bool:
        found = await conn.execute(
            select(_peers.c.peer_id).where(
                _peers.c.local_peer_id == self._local, _peers.c.peer_id == text
            )
        )
        return found.first() is not None

    async def _select_peer(self, conn: AsyncConnection, text: str) -> Any:
        result = await conn.execute(
            select(_peers).where(_peers.c.local_peer_id == self._local, _peers.c.peer_id == text)
        )
        return result.first()

    async def _select_addrs(
        self, conn: AsyncConnection, peers: Sequence[str]
    ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if not peers:
            return out
        result = await conn.execute(
            select(_addrs.c.peer_id, _addrs.c.addr)
            .where(_addrs.c.local_peer_id == self._local, _addrs.c.peer_id.in_(list(peers)))
            .order_by(_addrs.c.peer_id, _addrs.c.position)
        )
        for peer, addr in result.all():
            out.setdefault(peer, []).append(addr)
        return out

    def _addr_scope(self, text: str) -> tuple[Any, Any]:
        return (_addrs.c.local_peer_id == self._local, _addrs.c.peer_id == text)

    async def _insert_addrs(self, conn: AsyncConnection, text: str, addrs: tuple[str, ...]) -> None:
        if addrs:
            await conn.execute(
                insert(_addrs),
                [
                    {"local_peer_id": self._local, "peer_id": text, "position": i, "addr": a}
                    for i, a in enumerate(addrs)
                ],
            )

    async def _insert_peer(self, conn: AsyncConnection, record: PeerRecord) -> None:
        await conn.execute(
            insert(_peers).values(
                local_peer_id=self._local,
                peer_id=record.peer_id.to_string(),
                public_key=record.public_key,
                metadata=dict(record.metadata),
                first_seen=record.first_seen,
                last_seen=record.last_seen,
                connect_count=record.connect_count,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        )

    async def _update_critical(self, conn: AsyncConnection, record: PeerRecord) -> None:
        await conn.execute(
            update(_peers)
            .where(
                _peers.c.local_peer_id == self._local,
                _peers.c.peer_id == record.peer_id.to_string(),
            )
            .values(
                public_key=record.public_key,
                metadata=dict(record.metadata),
                updated_at=record.updated_at,
            )
        )

    # -- bans ---------------------------------------------------------------------------

    async def add_ban(
        self, target: str, *, reason: str = "", expires_at: float | None = None
    ) -> BanRecord:
        """See :meth:`engine.repository.Repository.add_ban`."""
        normalised, kind = check_ban_target(target)
        clean_reason = check_ban_reason(reason)
        expiry = check_expires_at(expires_at)
        for attempt in range(2):
            now = self._clock()
            try:
                async with self._write() as conn:
                    scope = (_bans.c.local_peer_id == self._local, _bans.c.target == normalised)
                    created = (
                        await conn.execute(select(_bans.c.created_at).where(*scope))
                    ).scalar_one_or_none()
                    if created is None:
                        created = now
                        await conn.execute(
                            insert(_bans).values(
                                local_peer_id=self._local,
                                target=normalised,
                                kind=kind,
                                reason=clean_reason,
                                created_at=now,
                                expires_at=expiry,
                            )
                        )
                    else:
                        await conn.execute(
                            update(_bans)
                            .where(*scope)
                            .values(reason=clean_reason, expires_at=expiry)
                        )
                return BanRecord(normalised, kind, clean_reason, float(created), expiry)
            except IntegrityError as exc:  # lost an insert race (PostgreSQL): update instead
                if attempt:
                    raise StorageError(f"could not store the ban of {normalised}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def remove_ban(self, target: str) -> None:
        """See :meth:`engine.repository.Repository.remove_ban`."""
        normalised, _ = check_ban_target(target)
        async with self._write() as conn:
            result = await conn.execute(
                delete(_bans).where(
                    _bans.c.local_peer_id == self._local, _bans.c.target == normalised
                )
            )
            if result.rowcount == 0:
                raise BanNotFoundError(f"{normalised} is not blacklisted")

    async def list_bans(self, *, include_expired: bool = False) -> list[BanRecord]:
        """See :meth:`engine.repository.Repository.list_bans`."""
        query = select(_bans).where(_bans.c.local_peer_id == self._local)
        if not include_expired:
            now = self._clock()
            query = query.where(or_(_bans.c.expires_at.is_(None), _bans.c.expires_at > now))
        async with self._read() as conn:
            rows = (await conn.execute(query.order_by(_bans.c.created_at, _bans.c.target))).all()
        return [
            BanRecord(
                r.target,
                "peer" if r.kind == "peer" else "cidr",
                r.reason,
                float(r.created_at),
                None if r.expires_at is None else float(r.expires_at),
            )
            for r in rows
        ]

    # -- audit --------------------------------------------------------------------------

    async def audit(
        self,
        kind: str,
        *,
        peer_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`engine.repository.Repository.audit`."""
        clean_kind, peer_text, clean_detail = check_audit_entry(kind, peer_id, detail)
        async with self._write() as conn:
            await conn.execute(
                insert(_audit).values(
                    local_peer_id=self._local,
                    at=self._clock(),
                    kind=clean_kind,
                    peer_id=peer_text,
                    detail=clean_detail,
                )
            )
        self._audit_since_trim += 1
        if self._max_audit is not None and self._audit_since_trim >= AUDIT_TRIM_EVERY:
            self._audit_since_trim = 0
            await self._trim_audit(self._max_audit)

    async def _trim_audit(self, keep: int) -> None:
        """Delete all but the ``keep`` newest audit entries of this node."""
        mine = _audit.c.local_peer_id == self._local
        cutoff = (
            select(_audit.c.id)
            .where(mine)
            .order_by(_audit.c.id.desc())
            .offset(keep)
            .limit(1)
            .scalar_subquery()
        )
        async with self._write() as conn:
            await conn.execute(delete(_audit).where(mine, _audit.c.id <= cutoff))

    async def list_audit(self, *, since_id: int = 0, limit: int = 100) -> list[AuditEntry]:
        """See :meth:`engine.repository.Repository.list_audit`."""
        check_audit_cursor(since_id, limit)
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(_audit)
                    .where(_audit.c.local_peer_id == self._local, _audit.c.id > since_id)
                    .order_by(_audit.c.id)
                    .limit(limit)
                )
            ).all()
        return [
            AuditEntry(int(r.id), float(r.at), r.kind, r.peer_id, dict(r.detail or {}))
            for r in rows
        ]

    async def prune_audit(self, *, before: float) -> int:
        """See :meth:`engine.repository.Repository.prune_audit`."""
        async with self._write() as conn:
            result = await conn.execute(
                delete(_audit).where(_audit.c.local_peer_id == self._local, _audit.c.at < before)
            )
        return int(result.rowcount)


def _peer_record(row: Any, addrs: tuple[str, ...]) -> PeerRecord:
    return PeerRecord(
        peer_id=PeerId.from_string(row.peer_id),
        addrs=addrs,
        public_key=None if row.public_key is None else bytes(row.public_key),
        metadata=dict(cast(Mapping[str, str], row._mapping["metadata"] or {})),
        first_seen=None if row.first_seen is None else float(row.first_seen),
        last_seen=None if row.last_seen is None else float(row.last_seen),
        connect_count=int(row.connect_count),
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
    )
