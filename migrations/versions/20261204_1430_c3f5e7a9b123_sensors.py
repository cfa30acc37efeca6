"""sensors

Revision ID: c3f5e7a9b123
Revises: 5c1e7b2d9a40
Create Date: 2026-12-04 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c3f5e7a9b123"
down_revision: str | None = "5c1e7b2d9a40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sensors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("triggers", sa.Integer(), nullable=False),
        sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_trigger_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["runs.id"],
            name=op.f("fk_sensors_last_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensors")),
        sa.UniqueConstraint("name", name=op.f("uq_sensors_name")),
    )
    op.create_index(op.f("ix_sensors_kind"), "sensors", ["kind"], unique=False)
    op.create_index(op.f("ix_sensors_event"), "sensors", ["event"], unique=False)
    op.create_index(op.f("ix_sensors_next_check_at"), "sensors", ["next_check_at"], unique=False)
    op.create_index(op.f("ix_sensors_last_run_id"), "sensors", ["last_run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sensors_last_run_id"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_next_check_at"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_event"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_kind"), table_name="sensors")
    op.drop_table("sensors")
