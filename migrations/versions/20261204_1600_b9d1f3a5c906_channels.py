"""messaging channels

Revision ID: b9d1f3a5c906
Revises: e7b3c9d1f502
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b9d1f3a5c906"
down_revision: str | None = "e7b3c9d1f502"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _channel_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["channel_id"],
        ["channels.id"],
        name=op.f(f"fk_{table}_channel_id_channels"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("workflow", sa.String(length=200), nullable=True),
        sa.Column("api_url", sa.String(length=500), nullable=True),
        sa.Column("options", _json(), nullable=False),
        sa.Column("secrets", _json(), nullable=False),
        sa.Column("require_pairing", sa.Boolean(), nullable=False),
        sa.Column("allowlist", _json(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("kind", "name", name=op.f("uq_channels_kind_name")),
    )
    op.create_table(
        "channel_identities",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=False),
        _channel_fk("channel_identities"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_identities")),
        sa.UniqueConstraint(
            "channel_id", "sender", name=op.f("uq_channel_identities_channel_id_sender")
        ),
    )
    op.create_table(
        "channel_inbound",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("conversation", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.String(length=200), nullable=True),
        sa.Column("extra", _json(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _channel_fk("channel_inbound"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_channel_inbound_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_inbound")),
        sa.UniqueConstraint(
            "channel_id", "event_id", name=op.f("uq_channel_inbound_channel_id_event_id")
        ),
    )
    op.create_index(op.f("ix_channel_inbound_run_id"), "channel_inbound", ["run_id"], unique=False)
    op.create_table(
        "channel_outbound",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("inbound_id", sa.BigInteger(), nullable=True),
        sa.Column("conversation", sa.String(length=200), nullable=False),
        sa.Column("reply_to", sa.String(length=200), nullable=True),
        sa.Column("extra", _json(), nullable=False),
        sa.Column("chunks", _json(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("refs", _json(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        _channel_fk("channel_outbound"),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["channel_inbound.id"],
            name=op.f("fk_channel_outbound_inbound_id_channel_inbound"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_outbound")),
    )
    op.create_index(
        op.f("ix_channel_outbound_channel_id"), "channel_outbound", ["channel_id"], unique=False
    )
    op.create_index(
        op.f("ix_channel_outbound_inbound_id"), "channel_outbound", ["inbound_id"], unique=False
    )
    op.create_index(
        op.f("ix_channel_outbound_next_attempt_at"),
        "channel_outbound",
        ["next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("channel_outbound")
    op.drop_table("channel_inbound")
    op.drop_table("channel_identities")
    op.drop_table("channels")
