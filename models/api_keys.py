"""Gateway API keys: created once in plaintext, stored as a SHA-256 hash.

A token is ``gb_<key id>_<secret>``: the key id (16 hex characters) finds the row, the
secret is 32 random bytes (URL-safe base64). Only ``sha256(token)`` is stored; a
fast hash is right for high-entropy random tokens (nothing to brute-force), and the
comparison uses :func:`hmac.compare_digest`. An unknown or malformed token still
costs one hash and one comparison against a dummy digest, so timing says little about
which part was wrong.

``last_used_at`` is hot data: :meth:`ApiKeyRepository.verify` records it in memory and
:meth:`ApiKeyRepository.flush` (periodic once :meth:`ApiKeyRepository.start` ran, and on
``close``) writes the batch. Creation and revocation are committed at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Double, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from engine.crypto.identity import PeerId
from engine.errors import ApiKeyNotFoundError, InvalidInputError
from engine.peer_validation import check_peer_id
from models.database import read_connection, write_transaction
from models.flusher import PeriodicFlusher
from models.repository import resolve_engine
from models.tables import ApiKeyRow

__all__ = ["TOKEN_PREFIX", "ApiKeyRecord", "ApiKeyRepository", "NewApiKey", "hash_token"]

TOKEN_PREFIX = "gb_"  # noqa: S105 - a public prefix, not a secret
"""Every token starts with this (helps secret scanners and humans)."""

_TOKEN_RE = re.compile(r"^gb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_:.-]{0,31}$")
_MAX_SCOPES = 16
_DUMMY_HASH = hashlib.sha256(b"glueberry-no-such-key").hexdigest()

_keys = cast(Table, ApiKeyRow.__table__)

_TOUCH = (
    update(_keys)
    .where(_keys.c.local_peer_id == bindparam("b_local"), _keys.c.key_id == bindparam("b_key"))
    .values(last_used_at=bindparam("b_at", type_=Double()))
)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored (never the token).

    Attributes:
        key_id: public identifier (part of the token).
        name: what the key is for.
        scopes: granted scopes (e.g. ``read``, ``write``, ``admin``).
        created_at: epoch seconds.
        last_used_at: epoch seconds of the latest successful verification, or ``None``.
        revoked_at: epoch seconds of revocation, or ``None`` while valid.
    """

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly created key: the only time the plaintext ``token`` is available."""

    record: ApiKeyRecord
    token: str


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        raise InvalidInputError("scopes must be a list of strings")
    out = tuple(dict.fromkeys(scopes))
    if not out or len(out) > _MAX_SCOPES:
        raise InvalidInputError(f"an API key needs 1..{_MAX_SCOPES} scopes")
    for scope in out:
        if not isinstance(scope, str) or not _SCOPE_RE.match(scope):
            raise InvalidInputError(f"invalid scope {str(scope)[:40]!r}")
    return out


class ApiKeyRepository:
    """API keys of one local node's gateway.

    Args:
        source: an ``AsyncEngine`` or an ``async_sessionmaker`` bound to one.
        local_peer_id: the local node's peer id; every row is scoped by it.
        flush_interval: seconds between writes of batched ``last_used_at`` values.
        clock: epoch-seconds clock (injectable for tests).
    """

    def __init__(
        self,
        source: AsyncEngine | async_sessionmaker[AsyncSession],
        local_peer_id: PeerId | str,
        *,
        flush_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = resolve_engine(source)
        self._local = check_peer_id(local_peer_id).to_string()
        self._clock = clock
        self._pending: dict[str, float] = {}
        self._flush_lock = asyncio.Lock()
        self._flusher = PeriodicFlusher(
            self.flush, flush_interval, name=f"glueberry-apikey-flush-{self._local[-8:]}"
        )

    @property
    def local_peer_id(self) -> str:
        """The local node's peer id text (the scope of every row)."""
        return self._local

    @property
    def pending_count(self) -> int:
        """Keys with a ``last_used_at`` not yet written."""
        return len(self._pending)

    @property
    def flush_rounds(self) -> int:
        """Rounds the flush task has completed."""
        return self._flusher.rounds

    async def start(self) -> None:
        """Start the periodic ``last_used_at`` flush (idempotent)."""
        self._flusher.start()

    async def wait_flushed(self, rounds: int = 1) -> None:
        """Wait until the flush task completed ``rounds`` rounds (wrap in a timeout)."""
        await self._flusher.wait_flushed(rounds)

    async def close(self) -> None:
        """Stop the flush task and write pending ``last_used_at`` values."""
        await self._flusher.stop()
        await self.flush()

    async def create(self, name: str, scopes: Iterable[str]) -> NewApiKey:
        """Create a key; the returned token is shown once and never stored.

        Args:
            name: 1..128 characters describing the key.
            scopes: granted scopes (1..16 of ``[a-z][a-z0-9_:.-]*``).

        Returns:
            The record and the plaintext token.

        Raises:
            InvalidInputError: bad name or scopes.
        """
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidInputError("API key name must be 1..128 characters")
        clean_scopes = _check_scopes(scopes)
        key_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = self._clock()
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert(_keys).values(
                    local_peer_id=self._local,
                    key_id=key_id,
                    name=name,
                    key_hash=hash_token(token),
                    scopes=list(clean_scopes),
                    created_at=now,
                    last_used_at=None,
                    revoked_at=None,
                )
            )
        return NewApiKey(ApiKeyRecord(key_id, name, clean_scopes, now, None, None), token)

    async def verify(self, token: str) -> ApiKeyRecord | None:
        """The key a token belongs to, or ``None`` (unknown, malformed or revoked).

        A successful verification records ``last_used_at`` (batched).
        """
        match = _TOKEN_RE.match(token) if isinstance(token, str) else None
        row = None
        if match is not None:
            row = await self._select(match.group(1))
        digest = hash_token(token) if isinstance(token, str) else _DUMMY_HASH
        stored = row.key_hash if row is not None else _DUMMY_HASH
        equal = hmac.compare_digest(digest, stored)
        if row is None or not equal or row.revoked_at is not None:
            return None
        now = self._clock()
        self._pending[row.key_id] = now
        record = _record(row)
        return ApiKeyRecord(record.key_id, record.name, record.scopes, record.created_at, now, None)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        row = await self._select(key_id)
        return None if row is None else self._with_pending(_record(row))

    async def list(self, *, include_revoked: bool = True) -> list[ApiKeyRecord]:
        """Every key of this node, oldest first."""
        query = select(_keys).where(_keys.c.local_peer_id == self._local)
        if not include_revoked:
            query = query.where(_keys.c.revoked_at.is_(None))
        async with read_connection(self._engine) as conn:
            rows = (await conn.execute(query.order_by(_keys.c.created_at, _keys.c.key_id))).all()
        return [self._with_pending(_record(r)) for r in rows]

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key now (idempotent for an already revoked key).

        Raises:
            ApiKeyNotFoundError: no such key.
        """
        now = self._clock()
        async with write_transaction(self._engine) as conn:
            scope = (_keys.c.local_peer_id == self._local, _keys.c.key_id == str(key_id)[:32])
            await conn.execute(
                update(_keys).where(*scope, _keys.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            row = (await conn.execute(select(_keys).where(*scope))).first()
        if row is None:
            raise ApiKeyNotFoundError(f"no API key {str(key_id)[:32]!r}")
        return self._with_pending(_record(row))

    async def flush(self) -> None:
        """Write batched ``last_used_at`` values now.

        Raises:
            StorageError: the write failed (the batch is kept for the next flush).
        """
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                async with write_transaction(self._engine) as conn:
                    await conn.execute(
                        _TOUCH,
                        [
                            {"b_local": self._local, "b_key": k, "b_at": at}
                            for k, at in batch.items()
                        ],
                    )
            except BaseException:
                for key, at in batch.items():
                    self._pending[key] = max(at, self._pending.get(key, at))
                raise

    async def _select(self, key_id: str) -> Any:
        async with read_connection(self._engine) as conn:
            result = await conn.execute(
                select(_keys).where(
                    _keys.c.local_peer_id == self._local, _keys.c.key_id == str(key_id)[:32]
                )
            )
            return result.first()

    def _with_pending(self, record: ApiKeyRecord) -> ApiKeyRecord:
        at = self._pending.get(record.key_id)
        if at is None or (record.last_used_at is not None and record.last_used_at >= at):
            return record
        return ApiKeyRecord(
            record.key_id, record.name, record.scopes, record.created_at, at, record.revoked_at
        )


def _record(row: Any) -> ApiKeyRecord:
    scopes = row.scopes if isinstance(row.scopes, list) else []
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        scopes=tuple(str(s) for s in scopes),
        created_at=float(row.created_at),
        last_used_at=None if row.last_used_at is None else float(row.last_used_at),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
    )
