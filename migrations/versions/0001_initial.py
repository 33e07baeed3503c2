"""Initial schema: peers, peer_addrs, bans, audit_log, api_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("local_peer_id", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("local_peer_id", "key_id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("local_peer_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_local_id", "audit_log", ["local_peer_id", "id"], unique=False)

    op.create_table(
        "bans",
        sa.Column("local_peer_id", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("local_peer_id", "target", name=op.f("pk_bans")),
    )
    op.create_table(
        "peers",
        sa.Column("local_peer_id", sa.String(length=128), nullable=False),
        sa.Column("peer_id", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=True),
        sa.Column("last_seen", sa.Double(), nullable=True),
        sa.Column("connect_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("local_peer_id", "peer_id", name=op.f("pk_peers")),
    )
    op.create_index(
        "ix_peers_local_created", "peers", ["local_peer_id", "created_at"], unique=False
    )

    op.create_table(
        "peer_addrs",
        sa.Column("local_peer_id", sa.String(length=128), nullable=False),
        sa.Column("peer_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("addr", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["local_peer_id", "peer_id"],
            ["peers.local_peer_id", "peers.peer_id"],
            name=op.f("fk_peer_addrs_local_peer_id_peers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("local_peer_id", "peer_id", "position", name=op.f("pk_peer_addrs")),
    )


def downgrade() -> None:
    op.drop_table("peer_addrs")
    op.drop_index("ix_peers_local_created", table_name="peers")

    op.drop_table("peers")
    op.drop_table("bans")
    op.drop_index("ix_audit_log_local_id", table_name="audit_log")

    op.drop_table("audit_log")
    op.drop_table("api_keys")
