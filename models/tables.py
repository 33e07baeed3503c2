"""The database schema: SQLAlchemy 2.x typed ORM tables.

Alembic (``migrations/``) is the only way the schema reaches a database; a test checks
that autogenerate finds no difference between these classes and the migrations.

Every table is keyed by ``local_peer_id``, the peer id of the node that owns the row, so
several nodes can share one database. Times are epoch seconds (double precision): the
same value on SQLite and PostgreSQL, no time-zone ambiguity, and what the engine uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "PEER_ID_LENGTH",
    "ApiKeyRow",
    "AuditRow",
    "BanRow",
    "Base",
    "PeerAddrRow",
    "PeerRow",
]

PEER_ID_LENGTH = 128
"""Column width of peer id texts (Ed25519 peer ids are 52 characters)."""

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGINT.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base holding the metadata Alembic compares against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy's documented class attribute
        float: Double(),
        dict[str, Any]: JSON(),
        bytes: LargeBinary(),
    }


class PeerRow(Base):
    """One address-book entry of one local node."""

    __tablename__ = "peers"

    local_peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    # ``metadata`` is reserved by the declarative base; the column keeps the plain name.
    peer_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON(), nullable=False)
    first_seen: Mapped[float | None]
    last_seen: Mapped[float | None]
    connect_count: Mapped[int] = mapped_column(BigInteger(), nullable=False, default=0)
    created_at: Mapped[float]
    updated_at: Mapped[float]

    addrs: Mapped[list[PeerAddrRow]] = relationship(
        back_populates="peer",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PeerAddrRow.position",
    )

    __table_args__ = (Index("ix_peers_local_created", "local_peer_id", "created_at"),)


class PeerAddrRow(Base):
    """One multiaddr of an address-book entry, in the order the caller gave."""

    __tablename__ = "peer_addrs"

    local_peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(Integer(), primary_key=True)
    addr: Mapped[str] = mapped_column(String(1024), nullable=False)

    peer: Mapped[PeerRow] = relationship(back_populates="addrs")

    __table_args__ = (
        ForeignKeyConstraint(
            ["local_peer_id", "peer_id"],
            ["peers.local_peer_id", "peers.peer_id"],
            ondelete="CASCADE",
        ),
    )


class BanRow(Base):
    """One blacklist entry (a peer id or a CIDR network) of one local node."""

    __tablename__ = "bans"

    local_peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    target: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    reason: Mapped[str] = mapped_column(Text(), nullable=False, default="")
    created_at: Mapped[float]
    expires_at: Mapped[float | None]


class AuditRow(Base):
    """One audit log entry: connection attempts, handshake results, bans, tampering."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    local_peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), nullable=False)
    at: Mapped[float]
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    peer_id: Mapped[str | None] = mapped_column(String(PEER_ID_LENGTH))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON(), nullable=False)

    __table_args__ = (Index("ix_audit_log_local_id", "local_peer_id", "id"),)


class ApiKeyRow(Base):
    """A gateway API key: only the SHA-256 of the token is stored."""

    __tablename__ = "api_keys"

    local_peer_id: Mapped[str] = mapped_column(String(PEER_ID_LENGTH), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSON(), nullable=False)
    created_at: Mapped[float]
    last_used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]
