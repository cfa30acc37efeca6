"""run concurrency keys and priority

Revision ID: a8c0e2f4b805
Revises: c4d6e8f0a603
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a8c0e2f4b805"
down_revision: str | None = "c4d6e8f0a603"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("concurrency_key", sa.String(length=200), nullable=True))
    op.add_column("runs", sa.Column("concurrency_limit", sa.Integer(), nullable=True))
    op.add_column(
        "runs", sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.create_index(
        "ix_runs_concurrency",
        "runs",
        ["workflow_name", "concurrency_key", "state", "created_at"],
        unique=False,
        postgresql_where=sa.text("concurrency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_concurrency", table_name="runs")
    op.drop_column("runs", "priority")
    op.drop_column("runs", "concurrency_limit")
    op.drop_column("runs", "concurrency_key")
