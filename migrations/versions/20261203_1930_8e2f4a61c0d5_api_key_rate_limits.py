"""api key rate limits

Revision ID: 8e2f4a61c0d5
Revises: 3f6c1d2a9b47
Create Date: 2026-12-03 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e2f4a61c0d5"
down_revision: str | None = "3f6c1d2a9b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit", sa.String(length=32), nullable=True))
    op.add_column("api_keys", sa.Column("rate_burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "rate_burst")
    op.drop_column("api_keys", "rate_limit")
