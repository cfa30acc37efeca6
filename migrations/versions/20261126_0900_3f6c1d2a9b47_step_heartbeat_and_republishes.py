"""step heartbeat and republish counter

Revision ID: 3f6c1d2a9b47
Revises: 57b95a79fc24
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f6c1d2a9b47"
down_revision: str | None = "57b95a79fc24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "step_runs",
        sa.Column("republishes", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("step_runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("step_runs", "heartbeat_at")
    op.drop_column("step_runs", "republishes")
