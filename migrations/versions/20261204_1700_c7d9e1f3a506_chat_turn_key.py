"""chat messages keyed by their turn

Revision ID: c7d9e1f3a506
Revises: b9d1f3a5c906
Create Date: 2026-12-04 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7d9e1f3a506"
down_revision: str | None = "b9d1f3a5c906"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chat_messages", sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_unique_constraint(
        op.f("uq_chat_messages_request_id_role"), "chat_messages", ["request_id", "role"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_chat_messages_request_id_role"), "chat_messages", type_="unique")
    op.drop_column("chat_messages", "request_id")
